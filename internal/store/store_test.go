package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/replaytest"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/exchange/authorize/authorizetest"
	"github.com/mcpsts/mcpsts/exchange/limitstest"
	"github.com/mcpsts/mcpsts/internal/store/storetest"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/issuer/keystoretest"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/consent"
	"github.com/mcpsts/mcpsts/trustmaps/consent/consenttest"
	"github.com/mcpsts/mcpsts/trustmaps/repotest"
)

func TestReplayCacheConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			replaytest.Run(t, func(t *testing.T, clock *replaytest.Clock) attest.ReplayCache {
				return openTest(t, b.NewURL(t), clock.Now)
			})
		})
	}
}

func TestSweepReplay(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			clock := replaytest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			s := openTest(t, b.NewURL(t), clock.Now)
			for i, ttl := range []time.Duration{time.Minute, time.Minute, time.Hour} {
				if err := s.Claim(ctx, string(rune('a'+i)), clock.Now().Add(ttl)); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := s.SweepReplay(ctx); err != nil || n != 0 {
				t.Fatalf("SweepReplay before expiry = %d, %v; want 0, nil", n, err)
			}
			clock.Advance(2 * time.Minute)
			if n, err := s.SweepReplay(ctx); err != nil || n != 2 {
				t.Fatalf("SweepReplay = %d, %v; want 2, nil", n, err)
			}
			var left int
			if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM replay_keys`).Scan(&left); err != nil || left != 1 {
				t.Fatalf("rows left = %d, %v; want 1", left, err)
			}
			if err := s.Claim(ctx, "c", clock.Now().Add(time.Minute)); !errors.Is(err, attest.ErrReplayed) {
				t.Fatalf("unexpired key after sweep: Claim = %v, want ErrReplayed", err)
			}
		})
	}
}

func TestReplayKeysAreHashed(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			s := openTest(t, b.NewURL(t), time.Now)
			const secret = "eyJhbGciOiJFUzI1NiJ9.canary"
			if err := s.Claim(ctx, secret, time.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			var stored string
			if err := s.db.QueryRowContext(ctx, `SELECT key_hash FROM replay_keys`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(stored, "canary") || len(stored) != 64 {
				t.Fatalf("stored key %q: want a 64-hex-digit hash", stored)
			}
		})
	}
}

func TestJanitorSweeps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := replaytest.NewClock(time.Now())
	s := openTest(t, "sqlite:"+filepath.Join(t.TempDir(), "j.db"), clock.Now)
	if err := s.Claim(ctx, "k", clock.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	done := make(chan struct{})
	go func() { s.RunJanitor(ctx, time.Millisecond, discardLogger()); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM replay_keys`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("janitor did not sweep the expired key within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestMigrations(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			u := b.NewURL(t)

			t.Run("concurrent starts", func(t *testing.T) {
				const n = 4
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s, err := Open(ctx, u)
						if err == nil {
							s.Close()
						}
						errs[i] = err
					}()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("Open #%d: %v", i, err)
					}
				}
			})

			s := openTest(t, u, time.Now)
			want, _ := migrationsFor(migrationFiles, s.dialect)
			got, err := s.SchemaVersion(ctx)
			if err != nil || got != want[len(want)-1].version {
				t.Fatalf("SchemaVersion = %d, %v; want %d", got, err, want[len(want)-1].version)
			}
			var rows int
			if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil || rows != len(want) {
				t.Fatalf("schema_migrations rows = %d, %v; want %d (each migration applied once)", rows, err, len(want))
			}

			t.Run("reopen is idempotent", func(t *testing.T) {
				openTest(t, u, time.Now)
			})

			t.Run("newer schema is refused", func(t *testing.T) {
				if _, err := s.db.ExecContext(ctx, s.dialect.rebind(
					`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`), 9999, "future", 0); err != nil {
					t.Fatal(err)
				}
				_, err := Open(ctx, u)
				if err == nil || !strings.Contains(err.Error(), "schema version 9999 is newer") {
					t.Fatalf("Open = %v, want a newer-schema error", err)
				}
			})
		})
	}
}

func TestMigrationFailureRollsBack(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			u := b.NewURL(t)
			s := openTest(t, u, time.Now)
			broken := fstest.MapFS{
				"migrations/0001_replay_keys.sql": {Data: []byte("SELECT 1")},
				"migrations/9001_good.sql":        {Data: []byte("CREATE TABLE good (id INTEGER)")},
				"migrations/9002_bad.sql":         {Data: []byte("CREATE TABLE oops (")},
			}
			err := s.migrate(ctx, broken)
			if err == nil || !strings.Contains(err.Error(), "migration 9002_bad") {
				t.Fatalf("migrate = %v, want an error naming 9002_bad", err)
			}
			if _, err := s.db.ExecContext(ctx, `SELECT * FROM good`); err == nil {
				t.Fatal("table of migration 9001 exists after the batch failed: migrations are not atomic")
			}
		})
	}
}

func TestMigrationFiles(t *testing.T) {
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    []int
		wantErr string
	}{
		{"dialect files", fstest.MapFS{
			"migrations/0001_a.sql":          {},
			"migrations/0002_b.postgres.sql": {},
			"migrations/0003_c.sqlite.sql":   {},
		}, []int{1, 3}, ""},
		{"bad name", fstest.MapFS{"migrations/1_a.sql": {}}, nil, `"1_a.sql" is not named`},
		{"duplicate version", fstest.MapFS{
			"migrations/0001_a.sql": {},
			"migrations/0001_b.sql": {},
		}, nil, "share version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := migrationsFor(tt.fs, sqliteDialect)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var versions []int
			for _, m := range got {
				versions = append(versions, m.version)
			}
			if len(versions) != len(tt.want) || versions[0] != tt.want[0] || versions[len(versions)-1] != tt.want[len(tt.want)-1] {
				t.Fatalf("versions = %v, want %v", versions, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, wantErr string
	}{
		{"no scheme", "mcpsts.db", "is not a store URL"},
		{"unknown scheme", "mysql://root@localhost/x", `unsupported store scheme "mysql"`},
		{"sqlite no path", "sqlite:", "no file path"},
		{"sqlite missing dir", "sqlite:" + filepath.Join(dir, "nope", "x.db"), "no such file or directory"},
		{"sqlite parent is a file", "sqlite:" + filepath.Join(file, "x.db"), "is not a directory"},
		{"sqlite query chars", "sqlite:" + dir + "/x.db?mode=ro", "may not contain"},
		{"postgres refused", "postgres://u:hunter2@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", "cannot connect to postgres://u:xxxxx@127.0.0.1:1/x"},
		{"postgres bad url", "postgres://u:hunter2@[::1/x", "invalid PostgreSQL URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.url)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open(%q) = %v, want error containing %q", tt.url, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestRebind(t *testing.T) {
	if got := postgresDialect.rebind("a = ? AND b = ?"); got != "a = $1 AND b = $2" {
		t.Fatalf("postgres rebind = %q", got)
	}
	if got := sqliteDialect.rebind("a = ?"); got != "a = ?" {
		t.Fatalf("sqlite rebind = %q", got)
	}
}

func TestKeyStoreConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			keystoretest.Run(t, func(t *testing.T) issuer.KeyStore {
				return openTest(t, b.NewURL(t), time.Now)
			})
		})
	}
}

func TestTrustMapRepositoryConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			repotest.Run(t, func(t *testing.T) trustmaps.Repository {
				return openTest(t, b.NewURL(t), time.Now)
			})
		})
	}
}

// TestDocumentRepositoryConformance: the providers and clients tables keep
// the same contract as trust maps.
func TestDocumentRepositoryConformance(t *testing.T) {
	for _, b := range backends(t) {
		for name, repo := range map[string]func(*Store) trustmaps.Repository{
			"providers": (*Store).FederationProviders, "clients": (*Store).Clients,
			"posture sources": (*Store).PostureSources,
		} {
			t.Run(b.Name+"/"+name, func(t *testing.T) {
				repotest.Run(t, func(t *testing.T) trustmaps.Repository {
					return repo(openTest(t, b.NewURL(t), time.Now))
				})
			})
		}
	}
}

func TestConsentStoreConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			consenttest.Run(t, func(t *testing.T, now func() time.Time) consent.Store {
				return openTest(t, b.NewURL(t), now)
			})
		})
	}
}

func TestAuthorizationStoreConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			authorizetest.Run(t, func(t *testing.T) authorizetest.Stores {
				return openTest(t, b.NewURL(t), time.Now)
			})
		})
	}
}

// TestSQLiteFileModes (finding 6 of the security review): the database
// and its -wal and -shm files hold sealed keys, trust maps and consents:
// only their owner may read them, whatever the umask.
func TestSQLiteFileModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s := openTest(t, "sqlite:"+path, time.Now)
	if err := s.Claim(context.Background(), "k", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// TestRevokingConsentRevokesRefreshTokens: a consent revoked by any path
// (the admin API, mcpsts consent revoke, /consents) takes the refresh
// tokens it allowed with it, and no other.
func TestRevokingConsentRevokesRefreshTokens(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			s := openTest(t, b.NewURL(t), time.Now)
			exp := time.Now().Add(time.Hour)
			c, err := s.GrantConsent(ctx, consent.Consent{User: "alice", Provider: "corp", ClientID: "app", Scopes: []string{"a"}, Resources: []string{"https://r.example/mcp"}, ExpiresAt: exp})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []authorize.Refresh{
				{Hash: authorize.Hash("mine"), Family: "f1", ClientID: "app", Resource: "https://r.example/mcp", Provider: "corp", Subject: "alice", ExpiresAt: exp},
				{Hash: authorize.Hash("other-client"), Family: "f2", ClientID: "other", Resource: "https://r.example/mcp", Provider: "corp", Subject: "alice", ExpiresAt: exp},
			} {
				if err := s.SaveRefresh(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.RevokeConsent(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RotateRefresh(ctx, authorize.Hash("mine"), authorize.Hash("mine-2"), exp); !errors.Is(err, authorize.ErrNotFound) {
				t.Fatalf("the revoked consent's refresh token rotated: %v", err)
			}
			if _, err := s.RotateRefresh(ctx, authorize.Hash("other-client"), authorize.Hash("other-2"), exp); err != nil {
				t.Fatalf("another client's refresh token: %v", err)
			}
		})
	}
}

// TestSharedSecret: two processes on one store get the same secret, made
// once; another name is another secret.
func TestSharedSecret(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			u := b.NewURL(t)
			a, c := openTest(t, u, time.Now), openTest(t, u, time.Now)
			s1, err := a.SharedSecret(ctx, "dpop-nonce")
			if err != nil {
				t.Fatal(err)
			}
			s2, err := c.SharedSecret(ctx, "dpop-nonce")
			if err != nil || string(s1) != string(s2) || len(s1) != 32 {
				t.Fatalf("%x, %x, %v", s1, s2, err)
			}
			if s3, _ := a.SharedSecret(ctx, "other"); string(s3) == string(s1) {
				t.Fatal("two names, one secret")
			}
		})
	}
}

// TestRevocations: a token is revoked by its jti, or by its subject or
// client when issued at or before the revocation; every replica on the
// store sees it at its next check.
func TestRevocations(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			u := b.NewURL(t)
			a, c := openTest(t, u, func() time.Time { return now }), openTest(t, u, func() time.Time { return now })
			hour := now.Add(time.Hour)
			for _, r := range [][2]string{{exchange.RevokeJTI, "j-1"}, {exchange.RevokeSubject, "alice"}, {exchange.RevokeClient, "evil-app"}} {
				if err := a.Revoke(ctx, r[0], r[1], now, hour); err != nil {
					t.Fatal(err)
				}
			}
			before, after := now.Add(-time.Minute), now.Add(time.Second)
			for _, tc := range []struct {
				name             string
				jti, sub, client string
				iat              time.Time
				want             bool
			}{
				{"by jti", "j-1", "bob", "app", after, true},
				{"another jti", "j-2", "bob", "app", before, false},
				{"the subject's, issued before", "j-3", "alice", "app", before, true},
				{"the subject's, issued after", "j-4", "alice", "app", after, false},
				{"the client's, issued before", "j-5", "bob", "evil-app", before, true},
				{"the client's, issued after", "j-6", "bob", "evil-app", after, false},
			} {
				if got, err := c.Revoked(ctx, tc.jti, tc.sub, tc.client, tc.iat); err != nil || got != tc.want {
					t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
				}
			}
		})
	}
}

// TestSharedLimitsConformance: two processes on one store are two replicas
// sharing their rate-limit buckets.
func TestSharedLimitsConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			limitstest.Run(t, func(t *testing.T) (exchange.SharedLimits, exchange.SharedLimits) {
				u := b.NewURL(t)
				return openTest(t, u, time.Now), openTest(t, u, time.Now)
			})
		})
	}
}

// BenchmarkSharedRateLimit measures one take from a shared bucket (a token
// request takes two: identity and client), on each backend, keys spread
// over 1,000 identities.
func BenchmarkSharedRateLimit(b *testing.B) {
	ctx := context.Background()
	for _, be := range storetest.Backends(b) {
		b.Run(be.Name, func(b *testing.B) {
			s := openTest(b, be.NewURL(b), time.Now)
			i := 0
			for b.Loop() {
				if _, _, err := s.Take(ctx, fmt.Sprintf("identity\x00ci/agent-%d", i%1000), 1e6, 1e6, time.Now()); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// TestGrantsFromBeforeTheDecisionReview: a refresh token and a consent
// stored by a server of schema 11 (before the grants kept the person and
// their family's end) still refresh after the upgrade: the migration adds
// the columns with their defaults, and such a token has no person (the maps
// decide on the provider and subject alone) and no family end.
func TestGrantsFromBeforeTheDecisionReview(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			u := b.NewURL(t)
			old, err := Open(ctx, u, WithoutMigration())
			if err != nil {
				t.Fatal(err)
			}
			upTo11 := fstest.MapFS{}
			entries, _ := fs.ReadDir(migrationFiles, "migrations")
			for _, e := range entries {
				if v, _ := strconv.Atoi(e.Name()[:4]); v <= 11 {
					data, _ := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
					upTo11["migrations/"+e.Name()] = &fstest.MapFile{Data: data}
				}
			}
			if err := old.migrate(ctx, upTo11); err != nil {
				t.Fatal(err)
			}
			exp := time.Now().Add(time.Hour)
			if _, err := old.db.ExecContext(ctx, old.dialect.rebind(`
				INSERT INTO refresh_tokens (token_hash, family, client_id, resource, scopes, provider, user_sub, ttl_seconds, jkt, expires_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
				authorize.Hash("old-rt"), "fam-old", "app", "https://r.example/mcp", "a offline_access", "corp", "alice", 600, "", exp.UnixMicro()); err != nil {
				t.Fatal(err)
			}
			old.Close()
			s := openTest(t, u, time.Now) // migrates to the newest
			got, err := s.RotateRefresh(ctx, authorize.Hash("old-rt"), authorize.Hash("new-rt"), exp.Add(time.Hour))
			if err != nil || got.Provider != "corp" || got.Subject != "alice" || got.Person.Issuer != "" || got.Person.Attributes != nil || !got.FamilyExpiresAt.IsZero() {
				t.Fatalf("the old refresh token after the upgrade = %+v, %v", got, err)
			}
			next, err := s.LookupRefresh(ctx, authorize.Hash("new-rt"))
			if err != nil || !next.ExpiresAt.Equal(exp.Add(time.Hour).Truncate(time.Microsecond)) {
				t.Fatalf("its successor = %+v, %v (no family end: the sliding expiry)", next, err)
			}
		})
	}
}
