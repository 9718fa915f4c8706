package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/admin"
	"github.com/mcpsts/mcpsts/internal/config"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// storeClients are the registered clients, read from the store and kept in
// memory (reloaded every interval), so that a token request reads no table.
type storeClients struct {
	repo trustmaps.Repository
	log  *slog.Logger
	now  func() time.Time
	// unusedExpiry removes dynamic registrations that got no token
	// within it.
	unusedExpiry time.Duration

	mu      sync.Mutex // one writer of clients at a time: a reload never undoes a registration
	clients atomic.Pointer[map[string]exchange.Client]
	dynamic atomic.Int64 // how many of clients were registered dynamically
}

func newStoreClients(ctx context.Context, repo trustmaps.Repository, log *slog.Logger, now func() time.Time, unusedExpiry time.Duration) (*storeClients, error) {
	if unusedExpiry == 0 {
		unusedExpiry = 24 * time.Hour
	}
	s := &storeClients{repo: repo, log: log, now: now, unusedExpiry: unusedExpiry}
	return s, s.reload(ctx)
}

// put puts m in force; the caller holds mu.
func (s *storeClients) put(m map[string]exchange.Client) {
	var n int64
	for id := range m {
		if strings.HasPrefix(id, exchange.DynamicClientPrefix) {
			n++
		}
	}
	s.clients.Store(&m)
	s.dynamic.Store(n)
}

// DynamicClients implements the registration handler's cap: the clients
// registered dynamically, as this replica last read them.
func (s *storeClients) DynamicClients() int { return int(s.dynamic.Load()) }

func (s *storeClients) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.repo.Records(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]exchange.Client, len(recs))
	for _, r := range recs {
		c, err := exchange.ParseClient(r.Document)
		if err != nil {
			s.log.Error("registered client not put in force", "client", r.ID, "error", err)
			continue
		}
		m[c.ID] = c
	}
	s.put(m)
	return nil
}

// RegisteredNames are the names of the clients an administrator registered
// (not those registered dynamically): a dynamic registration may not take
// one.
func (s *storeClients) RegisteredNames() []string {
	var out []string
	for id, c := range *s.clients.Load() {
		if c.Name != "" && !strings.HasPrefix(id, exchange.DynamicClientPrefix) {
			out = append(out, c.Name)
		}
	}
	return out
}

// Client implements exchange.ClientRegistry.
func (s *storeClients) Client(_ context.Context, id string) (exchange.Client, bool, error) {
	c, ok := (*s.clients.Load())[id]
	return c, ok, nil
}

// Run reloads the clients every interval until ctx is done.
func (s *storeClients) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("registered clients: reload failed", "error", err)
			}
			s.expireUnused(ctx)
		}
	}
}

// clientDocuments checks client documents for the admin API; changed puts
// a write in force on this replica at once.
func clientDocuments(repo trustmaps.Repository, changed func(context.Context)) *admin.Documents {
	return &admin.Documents{Repo: repo, Changed: changed, Check: func(_ context.Context, id string, doc []byte) []string {
		if doc == nil {
			return nil
		}
		c, err := exchange.ParseClient(doc)
		var problems []string
		if err != nil {
			problems = strings.Split(err.Error(), "\n")
		}
		if err == nil && c.ID != id {
			problems = append(problems, fmt.Sprintf("client_id: %q is not the id in the path %q", c.ID, id))
		}
		// The prefix marks clients no administrator vetted (their request
		// errors are never redirected, their consent screen warns).
		if strings.HasPrefix(id, exchange.DynamicClientPrefix) {
			problems = append(problems, fmt.Sprintf("client_id: %q: the prefix %s is for clients registered dynamically", id, exchange.DynamicClientPrefix))
		}
		return problems
	}}
}

// providerDocuments checks provider documents for the admin API: the rules
// of the configuration file for its type (oidc, spiffe, aws), the name
// equal to the path's, and nothing taken by another provider (from the
// file or the store): an OIDC name or issuer, a trust domain, AWS (one).
func providerDocuments(repo trustmaps.Repository, cfg *config.Config) *admin.Documents {
	return &admin.Documents{Repo: repo, Check: func(ctx context.Context, id string, doc []byte) []string {
		if doc == nil {
			return nil
		}
		d, err := config.ParseFederationDocument("provider "+id, doc)
		if err != nil {
			return strings.Split(err.Error(), "\n")
		}
		var problems []string
		if d.Name() != id {
			problems = append(problems, fmt.Sprintf("name: %q is not the id in the path %q", d.Name(), id))
		}
		// Provider names are one namespace across OIDC providers, trust
		// domains and AWS, in the file and the store.
		if where := cfg.NameTaken(d.Name()); where != "" {
			problems = append(problems, fmt.Sprintf("name: %q is taken by %s of the configuration file", d.Name(), where))
		}
		switch {
		case d.OIDC != nil:
			for _, f := range cfg.Providers {
				if f.Issuer == d.OIDC.Issuer {
					problems = append(problems, fmt.Sprintf("provider %q of the configuration file has this name or issuer", f.Name))
				}
			}
		case d.AWS != nil && cfg.AWS.Enabled:
			problems = append(problems, "aws: AWS is configured in the configuration file")
		}
		recs, err := repo.Records(ctx)
		if err != nil {
			return append(problems, "cannot read the providers: "+err.Error())
		}
		for _, r := range recs {
			if r.ID == id {
				continue
			}
			other, err := config.ParseFederationDocument(r.ID, r.Document)
			switch {
			case err != nil:
			case d.OIDC != nil && other.OIDC != nil && other.OIDC.Issuer == d.OIDC.Issuer:
				problems = append(problems, fmt.Sprintf("issuer: %q is also the issuer of provider %q", d.OIDC.Issuer, r.ID))
			case d.AWS != nil && other.AWS != nil:
				problems = append(problems, fmt.Sprintf("type: provider %q already configures AWS", r.ID))
			}
		}
		return problems
	}}
}

// RegisterClient implements exchange.ClientRegistrar: the client is
// stored, as the admin API would store it, and in force at once here (the
// other replicas see it at their next reload).
func (s *storeClients) RegisterClient(ctx context.Context, c exchange.Client) error {
	doc, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := exchange.ParseClient(doc); err != nil {
		return fmt.Errorf("registered client: %w", err)
	}
	if _, err := s.repo.PutRecord(ctx, c.ID, doc, 0); err != nil {
		return err
	}
	// In force here at once, without reading every client again.
	s.mu.Lock()
	defer s.mu.Unlock()
	m := maps.Clone(*s.clients.Load())
	m[c.ID] = c
	s.put(m)
	return nil
}

// ClientUsed records a dynamically registered client's first token in the
// store, which keeps the registration from expiring. A failure is logged:
// the registration may then expire, and the client registers again.
func (s *storeClients) ClientUsed(ctx context.Context, id string) {
	if c, ok := (*s.clients.Load())[id]; !ok || c.FirstUsedAt != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, err := s.repo.Record(ctx, id)
	if err != nil {
		s.log.Warn("registered client: recording its first use", "client", id, "error", err)
		return
	}
	c, err := exchange.ParseClient(rec.Document)
	if err != nil || c.FirstUsedAt != 0 {
		return
	}
	c.FirstUsedAt = s.now().Unix()
	doc, _ := json.Marshal(c)
	if _, err := s.repo.PutRecord(ctx, id, doc, rec.Version); err != nil {
		// A conflict is another replica recording the same use.
		if !errors.Is(err, trustmaps.ErrConflict) {
			s.log.Warn("registered client: recording its first use", "client", id, "error", err)
		}
		return
	}
	m := maps.Clone(*s.clients.Load())
	m[id] = c
	s.put(m)
}

// expireUnused removes the dynamic registrations that got no token within
// unusedExpiry of their registration. Each is deleted at the version read,
// so that a use recorded meanwhile (by any replica) keeps it.
func (s *storeClients) expireUnused(ctx context.Context) {
	cutoff := s.now().Add(-s.unusedExpiry).Unix()
	var removed []string
	for id, c := range *s.clients.Load() {
		if !strings.HasPrefix(id, exchange.DynamicClientPrefix) || c.FirstUsedAt != 0 || c.RegisteredAt == 0 || c.RegisteredAt > cutoff {
			continue
		}
		rec, err := s.repo.Record(ctx, id)
		if err != nil {
			continue // gone already, or the store is down: the next pass tries again
		}
		if c, err := exchange.ParseClient(rec.Document); err != nil || c.FirstUsedAt != 0 {
			continue
		}
		if err := s.repo.DeleteRecord(ctx, id, rec.Version); err == nil {
			removed = append(removed, id)
		}
	}
	if len(removed) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := maps.Clone(*s.clients.Load())
	for _, id := range removed {
		delete(m, id)
	}
	s.put(m)
	s.log.Info("dynamic registrations never used removed", "count", len(removed), "unused_expiry", s.unusedExpiry)
}

// changed reloads the clients after an admin API write, logging a failure
// (the periodic reload tries again).
func (s *storeClients) changed(ctx context.Context) {
	if err := s.reload(ctx); err != nil {
		s.log.Warn("registered clients: reload after a write failed", "error", err)
	}
}

// registrationRate is the limit on registrations from all sources
// together: per_period every period (0: 1000 an hour), all at once at most.
func registrationRate(r config.Registration) exchange.RateLimit {
	n, period := r.PerPeriod, r.Period
	if n == 0 {
		n = 1000
	}
	if period == 0 {
		period = time.Hour
	}
	return exchange.RateLimit{Rate: float64(n) / period.Seconds(), Burst: n}
}
