package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/awskms"
)

// loadKEK finds the key-encryption key: MCPSTS_KEK, keys.kek_file, or in
// --dev the generated one in the data directory. With an AWS KMS key and
// none of these, it returns nil.
func loadKEK(cfg *config.Config, dev bool, getenv func(string) string) (*issuer.KEK, error) {
	if v := getenv(config.KEKEnv); v != "" {
		k, err := issuer.ParseKEK([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.KEKEnv, err)
		}
		return k, nil
	}
	if f := cfg.Keys.KEKFile; f != "" {
		text, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("keys.kek_file: %w", err)
		}
		k, err := issuer.ParseKEK(text)
		if err != nil {
			return nil, fmt.Errorf("keys.kek_file %s: %w", f, err)
		}
		return k, nil
	}
	if dev {
		text, err := devpki.EnsureKEK(cfg.DataDir, issuer.GenerateKEK)
		if err != nil {
			return nil, err
		}
		k, err := issuer.ParseKEK(text)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", cfg.DataDir, devpki.KEKFile, err)
		}
		return k, nil
	}
	if cfg.Keys.AWSKMS.KeyID != "" {
		return nil, nil
	}
	return nil, errors.New("keys.kek_file: no key-encryption key (set keys.kek_file or " + config.KEKEnv + ")")
}

// IssuerSetup is what NewIssuer builds from.
type IssuerSetup struct {
	Config *config.Config
	Dev    bool // the KEK may be generated in the data directory
	URL    string
	Store  *store.Store
	Getenv func(string) string
	Now    func() time.Time
	Log    *slog.Logger
	Tracer trace.Tracer // records rotations; nil: none
}

// NewIssuer wires the issuer with its key backends. With an AWS KMS key it
// signs there (and enrolls the key); otherwise it generates and rotates
// local keys sealed with the KEK. It does not start the issuer. The server
// and the keys commands share it.
func NewIssuer(ctx context.Context, is IssuerSetup) (*issuer.Issuer, error) {
	cfg, dev, issuerURL, st, log := is.Config, is.Dev, is.URL, is.Store, is.Log
	kek, err := loadKEK(cfg, dev, is.Getenv)
	if err != nil {
		return nil, err
	}
	alg, err := issuer.ParseAlgorithm(cfg.Keys.Algorithm)
	if err != nil {
		return nil, err
	}
	ic := issuer.Config{
		Issuer:          issuerURL,
		Store:           st,
		RotationPeriod:  cfg.Keys.RotationPeriod,
		RefreshInterval: cfg.Keys.RefreshInterval,
		DefaultTTL:      cfg.Tokens.DefaultTTL,
		MaxTTL:          cfg.Tokens.MaxTTL,
		Clock:           is.Now,
		Log:             log,
		Tracer:          is.Tracer,
	}
	local := &issuer.LocalKeys{KEK: kek, Algorithm: alg, RSABits: cfg.Keys.RSABits}
	var kmsKey *issuer.KeyRecord
	if id := cfg.Keys.AWSKMS.KeyID; id != "" {
		var opts []func(*awsconfig.LoadOptions) error
		if r := cfg.Keys.AWSKMS.Region; r != "" {
			opts = append(opts, awsconfig.WithRegion(r))
		}
		awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("keys.aws_kms: %w", err)
		}
		backend, err := awskms.New(kms.NewFromConfig(awsCfg))
		if err != nil {
			return nil, err
		}
		rec, err := backend.Record(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("keys.aws_kms.key_id: %w", err)
		}
		kmsKey = &rec
		ic.Backends = append(ic.Backends, backend)
		if kek != nil { // local keys made before the switch to KMS still open
			ic.Backends = append(ic.Backends, local)
		}
	} else {
		ic.Local = local
	}
	iss, err := issuer.New(ic)
	if err != nil {
		return nil, err
	}
	if kmsKey != nil {
		added, err := iss.Enroll(ctx, *kmsKey)
		if err != nil {
			return nil, err
		}
		if added {
			log.Info("enrolled the AWS KMS signing key", "kid", kmsKey.ID, "key_id", kmsKey.ExternalID)
		}
	}
	return iss, nil
}
