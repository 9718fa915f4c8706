package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Config configures an Issuer.
type Config struct {
	// Issuer is the iss of every token: an https URL without query or
	// fragment.
	Issuer string
	Store  KeyStore
	// Backends open stored keys, one per KeyRecord.Backend in use.
	Backends []Backend
	// Local generates new keys on rotation. Nil disables rotation: keys
	// then come from Enroll (an external KMS key).
	Local *LocalKeys
	// RotationPeriod is how long a key is the newest before a successor is
	// generated; 0 means 24h.
	RotationPeriod time.Duration
	// DefaultTTL is the lifetime of a token whose grant asks for none
	// (0 means 15m); MaxTTL the longest a grant may ask for (0 means
	// MaxTokenLifetime). Both lie within [MinTokenLifetime, MaxTokenLifetime].
	DefaultTTL, MaxTTL time.Duration
	// RefreshInterval is how often the key set is reloaded from the store
	// (0 means 30s): the bound within which replicas see a new key.
	RefreshInterval time.Duration
	Clock           func() time.Time // nil means time.Now
	Log             *slog.Logger
	// Tracer records each scheduled rotation that changed the key set as
	// a span (the audit trail of key changes); nil records none.
	Tracer trace.Tracer
}

// MaxStaleness is how old a loaded key set may be for the issuer to sign
// with it. Any key activated by now was created PublishLead ago, longer
// than this, so a signing replica always knows the current key.
const MaxStaleness = 30 * time.Minute

// ErrNoSigningKey is returned by Mint when no key can sign now: none is
// active yet, or the key set could not be reloaded for MaxStaleness.
var ErrNoSigningKey = errors.New("issuer: no signing key available")

// Issuer mints access tokens. It is safe for concurrent use.
type Issuer struct {
	cfg      Config
	now      func() time.Time
	log      *slog.Logger
	backends map[string]Backend

	keys    atomic.Pointer[keySet]
	mu      sync.Mutex        // serializes reloads
	signers map[string]Signer // opened keys, reused across reloads; under mu
}

// New validates cfg and returns an Issuer with no keys loaded: call Start
// (or Refresh) before Mint.
func New(cfg Config) (*Issuer, error) {
	var errs []error
	if p := IssuerURLProblem(cfg.Issuer); p != "" {
		errs = append(errs, fmt.Errorf("issuer: issuer URL %s", p))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("issuer: no key store"))
	}
	if cfg.RotationPeriod == 0 {
		cfg.RotationPeriod = 24 * time.Hour
	}
	if cfg.RotationPeriod < PublishLead+Retention {
		errs = append(errs, fmt.Errorf("issuer: rotation period %s is shorter than the %s a key must be published before and after it signs", cfg.RotationPeriod, PublishLead+Retention))
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = 15 * time.Minute
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = MaxTokenLifetime
	}
	for name, d := range map[string]time.Duration{"default": cfg.DefaultTTL, "maximum": cfg.MaxTTL} {
		if d < MinTokenLifetime || d > MaxTokenLifetime {
			errs = append(errs, fmt.Errorf("issuer: %s token lifetime %s is outside [%s, %s]", name, d, MinTokenLifetime, MaxTokenLifetime))
		}
	}
	if cfg.DefaultTTL > cfg.MaxTTL {
		errs = append(errs, fmt.Errorf("issuer: default token lifetime %s exceeds the maximum %s", cfg.DefaultTTL, cfg.MaxTTL))
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 30 * time.Second
	}
	if cfg.RefreshInterval > MaxStaleness/4 {
		errs = append(errs, fmt.Errorf("issuer: key refresh interval %s is longer than %s", cfg.RefreshInterval, MaxStaleness/4))
	}
	backends := map[string]Backend{}
	if cfg.Local != nil {
		if cfg.Local.KEK == nil {
			errs = append(errs, errors.New("issuer: local keys need a key-encryption key"))
		}
		if _, err := ParseAlgorithm(string(cfg.Local.Algorithm)); err != nil {
			errs = append(errs, err)
		}
		backends[LocalBackendName] = cfg.Local
	}
	for _, b := range cfg.Backends {
		backends[b.Name()] = b
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Issuer{cfg: cfg, now: cfg.Clock, log: cfg.Log, backends: backends, signers: map[string]Signer{}}, nil
}

// IssuerURLProblem says why s is not an issuer identifier (RFC 8414 §2), or
// returns "".
func IssuerURLProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "is empty"
	case err != nil:
		return fmt.Sprintf("%q is not a URL", s)
	case u.Scheme != "https" || u.Host == "":
		return fmt.Sprintf("%q is not an https URL with a host", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Sprintf("%q may not have a query or fragment", s)
	}
	return ""
}

// Start makes sure a key exists (generating the first one, active at once,
// when the store has none and local keys are configured), loads the key set
// and checks that a key can sign. Run keeps it fresh.
func (i *Issuer) Start(ctx context.Context) error {
	if i.cfg.Local != nil {
		if _, err := i.Rotate(ctx, false); err != nil {
			return err
		}
	}
	if err := i.Refresh(ctx); err != nil {
		return err
	}
	if _, err := i.keys.Load().signer(i.now()); err != nil {
		return err
	}
	return nil
}

// Run reloads the key set every RefreshInterval and, with local keys,
// rotates on schedule, until ctx is done. Failures are logged and retried;
// Mint stops signing once the loaded key set is older than MaxStaleness.
func (i *Issuer) Run(ctx context.Context) {
	t := time.NewTicker(i.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if i.cfg.Local != nil {
			res, err := i.Rotate(ctx, false)
			if err != nil {
				i.log.Warn("key rotation failed", "error", err)
			} else if res.Added != "" || len(res.Removed) > 0 {
				i.log.Info("keys rotated", "added", res.Added, "activates_at", res.ActivatesAt, "removed", res.Removed)
			}
			if err != nil || res.Added != "" || len(res.Removed) > 0 {
				i.RecordRotation(ctx, "mcpsts/schedule", res, err)
			}
		}
		if err := i.Refresh(ctx); err != nil {
			i.log.Warn("key set reload failed", "error", err)
		}
	}
}

// OperationRotate names a key rotation in the audit trail.
const OperationRotate = "keys.rotate"

// RecordRotation records a rotation by principal as a span (keys.rotate)
// with the mcpsts.admin.* attributes of an administrative change, when the
// issuer has a Tracer.
func (i *Issuer) RecordRotation(ctx context.Context, principal string, res RotationResult, err error) {
	if i.cfg.Tracer == nil {
		return
	}
	_, span := i.cfg.Tracer.Start(ctx, OperationRotate)
	defer span.End()
	result := "ok"
	if err != nil {
		result = "failed"
		span.SetStatus(codes.Error, "rotation failed")
	}
	span.SetAttributes(attribute.String("mcpsts.admin.operation", OperationRotate), attribute.String("mcpsts.admin.principal", principal),
		attribute.String("mcpsts.admin.result", result), attribute.String("mcpsts.keys.added", res.Added),
		attribute.StringSlice("mcpsts.keys.removed", res.Removed))
	if res.Added != "" {
		span.SetAttributes(attribute.String("mcpsts.keys.activates_at", res.ActivatesAt.UTC().Format(time.RFC3339)))
	}
}

// RotationResult says what Rotate did.
type RotationResult struct {
	Added       string    // the kid of a new key, if one was made
	ActivatesAt time.Time // when it signs
	Pending     string    // a key already pending, when none was made
	Removed     []string  // expired keys deleted
}

// Rotate makes a new local key when the store has none (active at once),
// when the newest key is RotationPeriod old, or when force is set and no
// key is pending; the new key activates PublishLead later. It also deletes
// expired keys. It runs as one store update, so that of several replicas
// rotating at once exactly one adds a key.
func (i *Issuer) Rotate(ctx context.Context, force bool) (RotationResult, error) {
	if i.cfg.Local == nil {
		return RotationResult{}, errors.New("issuer: rotation needs local keys; with an external key, enroll its successor")
	}
	var res RotationResult
	err := i.cfg.Store.UpdateKeys(ctx, func(keys []KeyRecord) (KeyChange, error) {
		res = RotationResult{}
		now := timeOrZero(i.now())
		var change KeyChange
		var newest *KeyRecord
		for _, st := range Lifecycle(keys, now) {
			switch st.State {
			case StateExpired:
				change.Remove = append(change.Remove, st.ID)
			case StatePending:
				res.Pending = st.ID
			}
		}
		res.Removed = change.Remove
		for j := range keys {
			if newest == nil || keys[j].CreatedAt.After(newest.CreatedAt) {
				newest = &keys[j]
			}
		}
		activate := now.Add(PublishLead)
		switch {
		case newest == nil:
			activate = now // nothing was ever signed or cached: no lead needed
		case res.Pending != "":
			return change, nil
		case force, !now.Before(newest.CreatedAt.Add(i.cfg.RotationPeriod)):
		default:
			return change, nil
		}
		rec, err := i.cfg.Local.NewKey()
		if err != nil {
			return KeyChange{}, err
		}
		rec.CreatedAt, rec.ActivateAt = now, activate
		change.Add = append(change.Add, rec)
		res.Added, res.ActivatesAt = rec.ID, activate
		return change, nil
	})
	if err != nil {
		return RotationResult{}, fmt.Errorf("issuer: rotate: %w", err)
	}
	return res, nil
}

// Enroll adds an externally held key (a KMS key) unless the store has it:
// active at once when the store has no key, else pending for PublishLead.
// It reports whether it added the key.
func (i *Issuer) Enroll(ctx context.Context, rec KeyRecord) (added bool, err error) {
	if _, ok := i.backends[rec.Backend]; !ok {
		return false, fmt.Errorf("issuer: no backend %q for key %s", rec.Backend, rec.ID)
	}
	err = i.cfg.Store.UpdateKeys(ctx, func(keys []KeyRecord) (KeyChange, error) {
		added = false
		for _, k := range keys {
			if k.ID == rec.ID {
				return KeyChange{}, nil
			}
		}
		now := timeOrZero(i.now())
		rec.CreatedAt, rec.ActivateAt = now, now.Add(PublishLead)
		if len(keys) == 0 {
			rec.ActivateAt = now
		}
		added = true
		return KeyChange{Add: []KeyRecord{rec}}, nil
	})
	if err != nil {
		return false, fmt.Errorf("issuer: enroll key %s: %w", rec.ID, err)
	}
	return added, nil
}

// Refresh reloads the key set from the store and opens the keys that can
// still sign. It keeps the previous set if anything fails.
func (i *Issuer) Refresh(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	records, err := i.cfg.Store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("issuer: load keys: %w", err)
	}
	now := i.now()
	statuses := Lifecycle(records, now)
	signers := map[string]Signer{}
	for _, st := range statuses {
		if st.State != StatePending && st.State != StateActive {
			continue
		}
		if s, ok := i.signers[st.ID]; ok {
			signers[st.ID] = s
			continue
		}
		b, ok := i.backends[st.Backend]
		if !ok {
			return fmt.Errorf("issuer: key %s is held by backend %q, which is not configured", st.ID, st.Backend)
		}
		s, err := b.Open(ctx, st.KeyRecord)
		if err != nil {
			return err
		}
		signers[st.ID] = s
	}
	ks, err := newKeySet(statuses, signers, now)
	if err != nil {
		return err
	}
	i.signers = signers
	i.keys.Store(ks)
	return nil
}

// Ready reports whether a key can sign now; it backs /readyz.
func (i *Issuer) Ready(ctx context.Context) error {
	ks := i.keys.Load()
	if ks == nil {
		return ErrNoSigningKey
	}
	_, err := ks.signer(i.now())
	return err
}

// Keys returns the lifecycle of the stored keys now, for operators.
func (i *Issuer) Keys(ctx context.Context) ([]KeyStatus, error) {
	records, err := i.cfg.Store.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("issuer: load keys: %w", err)
	}
	return Lifecycle(records, i.now()), nil
}
