package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/internal/devpki"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/awskms"
)

// devConfig is the configuration of --dev: the defaults, with the data
// directory and listen address of the flags.
func devConfig(data, listen string) *config.Config {
	c := config.Defaults()
	c.DataDir, c.Listen = data, listen
	return &c
}

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

// newIssuer wires the issuer with its key backends. With an AWS KMS key it
// signs there (and enrolls the key); otherwise it generates and rotates
// local keys sealed with the KEK. It does not start the issuer.
// issuerSetup is what newIssuer builds from.
type issuerSetup struct {
	cfg    *config.Config
	dev    bool
	url    string
	store  *store.Store
	env    env
	log    *slog.Logger
	tracer trace.Tracer // records rotations; nil: none
}

func newIssuer(ctx context.Context, is issuerSetup) (*issuer.Issuer, error) {
	cfg, dev, issuerURL, st, e, log := is.cfg, is.dev, is.url, is.store, is.env, is.log
	kek, err := loadKEK(cfg, dev, e.getenv)
	if err != nil {
		return nil, err
	}
	alg, err := issuer.ParseAlgorithm(cfg.Keys.Algorithm)
	if err != nil {
		return nil, err
	}
	ic := issuer.Config{
		Issuer:         issuerURL,
		Store:          st,
		RotationPeriod: cfg.Keys.RotationPeriod,
		DefaultTTL:     cfg.Tokens.DefaultTTL,
		MaxTTL:         cfg.Tokens.MaxTTL,
		Clock:          e.now,
		Log:            log,
		Tracer:         is.tracer,
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
