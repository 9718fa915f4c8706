package posture_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/posture"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/federation/federationtest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

// The workload: a GCE instance (the claim shape of
// shared/fixtures/claims/gce-instance-identity.json), whose host the EDR
// agent reports on by its instance id.
var workload = attest.Identity{
	Kind: "oidc", Provider: "gce", Issuer: "https://accounts.google.com", Subject: "104392711200435187042",
	Attributes: map[string]any{"google": map[string]any{"compute_engine": map[string]any{
		"instance_id": "4871235127458710943", "instance_name": "agent-1", "project_id": "mcp-prod"}}},
}

// edrMap grants only to compliant hosts with a score of at least 70.
const edrMap = `
id: compliant-agents
match:
  provider: gce
  subject: "104392711200435187042"
  conditions:
    - context.edr.?compliant.orValue(false)
    - context.edr.score >= 70
grant:
  client_id: agent
  audiences: [https://mcp.example/tools]
  scopes: [tools.read]
`

func engine(t testing.TB, doc string) *trustmaps.Engine {
	t.Helper()
	e, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type fixture struct {
	edr   *federationtest.Issuer
	other *federationtest.Issuer
	now   time.Time
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{edr: federationtest.NewIssuer(t), other: federationtest.NewIssuer(t), now: time.Now().Truncate(time.Second)}
	f.edr.AddKey("ES256")
	return f
}

func (f *fixture) keys(t testing.TB, is *federationtest.Issuer) *federation.Provider {
	t.Helper()
	p, err := federation.NewProvider(federation.ProviderConfig{Name: "edr", Issuer: is.URL, Discovery: true,
		Algorithms: []string{"ES256", "RS256"}, Fetcher: is.Fetcher()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

// report is an assertion as the EDR service signs it.
func (f *fixture) report(is *federationtest.Issuer, host string, compliant bool, score int, age time.Duration) string {
	iat := f.now.Add(-age)
	return is.Sign(map[string]any{
		"iss": is.URL, "sub": host, "aud": "https://sts.example",
		"iat": iat.Unix(), "exp": iat.Add(15 * time.Minute).Unix(),
		"compliant": compliant, "score": score, "os": map[string]any{"patched": compliant},
	}, nil)
}

func (f *fixture) set(t testing.TB, onError posture.OnError, pulls ...*posture.Pull) *posture.Set {
	t.Helper()
	s, err := posture.New(func() time.Time { return f.now }, []posture.AssertionConfig{{
		Name: "edr", Keys: f.keys(t, f.edr), Audience: "https://sts.example", MaxAge: 30 * time.Minute,
		BindIdentity: "attributes.google.compute_engine.instance_id", BindProviders: []string{"gce"}, OnError: onError,
	}}, pulls)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const host = "4871235127458710943"

func TestAssertions(t *testing.T) {
	f := newFixture(t)
	e := engine(t, edrMap)
	for _, tc := range []struct {
		name       string
		onError    posture.OnError
		assertions []string
		status     string
		reason     string // prefix
		granted    bool
		outcome    string // the map's outcome in the trace, when not granted
		provider   string // the identity's provider, when not the workload's
	}{
		{name: "compliant", assertions: []string{f.report(f.edr, host, true, 88, time.Minute)}, status: "present", granted: true},
		{name: "not compliant", assertions: []string{f.report(f.edr, host, false, 88, time.Minute)}, status: "present", outcome: "condition 1 is false"},
		{name: "low score", assertions: []string{f.report(f.edr, host, true, 69, time.Minute)}, status: "present", outcome: "condition 2 is false"},
		{name: "expired", assertions: []string{f.report(f.edr, host, true, 88, 20*time.Minute)}, status: "unavailable", reason: "token_expired",
			outcome: `posture source "edr" unavailable: token_expired`},
		{name: "too old", assertions: []string{f.edr.Sign(map[string]any{"iss": f.edr.URL, "sub": host, "aud": "https://sts.example",
			"iat": f.now.Add(-time.Hour).Unix(), "exp": f.now.Add(time.Hour).Unix(), "compliant": true, "score": 90}, nil)},
			status: "unavailable", reason: "token_too_old"},
		{name: "another host", assertions: []string{f.report(f.edr, "1111111111111111111", true, 99, time.Minute)}, status: "unavailable", reason: "not_bound",
			outcome: `posture source "edr" unavailable: not_bound`},
		{name: "the same host named by another provider", provider: "gce-staging", assertions: []string{f.report(f.edr, host, true, 99, time.Minute)},
			status: "unavailable", reason: `not_bound: the identity's provider "gce-staging"`, outcome: `posture source "edr" unavailable: not_bound`},
		{name: "wrong audience", assertions: []string{f.edr.Sign(map[string]any{"iss": f.edr.URL, "sub": host, "aud": "https://elsewhere.example",
			"iat": f.now.Unix(), "exp": f.now.Add(time.Minute).Unix(), "compliant": true, "score": 90}, nil)}, status: "unavailable", reason: "wrong_audience"},
		{name: "forged signature", assertions: []string{forge(f.report(f.other, host, true, 99, time.Minute), f.edr.URL)}, status: "unavailable"},
		{name: "untrusted issuer", assertions: []string{f.report(f.other, host, true, 99, time.Minute)}, status: "absent", reason: "no assertion sent",
			outcome: "condition 1 failed: no such key: edr"},
		{name: "none", status: "absent", reason: "no assertion sent", outcome: "condition 1 failed: no such key: edr"},
		{name: "two", assertions: []string{f.report(f.edr, host, true, 88, time.Minute), f.report(f.edr, host, true, 88, time.Minute)},
			status: "unavailable", reason: "several_assertions"},
		{name: "garbage", assertions: []string{"not.a.jwt"}, status: "absent", reason: "no assertion sent"},
		{name: "expired, on_error absent", onError: posture.Absent, assertions: []string{f.report(f.edr, host, true, 88, 20*time.Minute)},
			status: "absent", reason: "token_expired", outcome: "condition 1 failed: no such key: edr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.set(t, tc.onError)
			id := workload
			if tc.provider != "" {
				id.Provider = tc.provider
			}
			got := s.Evaluate(context.Background(), id, tc.assertions, nil)
			p := got[0]
			if p.Source != "edr" || p.Status != tc.status || !strings.HasPrefix(p.Reason, tc.reason) {
				t.Fatalf("posture %+v, want status %s and a reason starting %q", p, tc.status, tc.reason)
			}
			if strings.Contains(p.Reason, "eyJ") {
				t.Fatalf("the reason quotes an assertion: %s", p.Reason)
			}
			req := trustmaps.Request{Audience: "https://mcp.example/tools", Posture: got, Time: f.now}
			_, err := e.Decide(context.Background(), id, req)
			if granted := err == nil; granted != tc.granted {
				t.Fatalf("granted %v (%v), want %v", granted, err, tc.granted)
			}
			if tc.provider != "" {
				return // no map of edrMap matches that provider: its trace has nothing to show
			}
			tr := e.Explain(context.Background(), id, req)
			if !tc.granted && tc.outcome != "" && !strings.HasPrefix(tr.Maps[0].Outcome, tc.outcome) {
				t.Errorf("trace outcome %q, want %q", tr.Maps[0].Outcome, tc.outcome)
			}
			pt := tr.Posture[0]
			if pt.Source != "edr" || pt.Status != tc.status || strings.Join(pt.Read, ",") != "compliant,score" {
				t.Errorf("trace posture %+v, want edr %s reading compliant,score", pt, tc.status)
			}
			if tc.status == "present" && pt.Age != "1m0s" {
				t.Errorf("trace age %q, want 1m0s", pt.Age)
			}
			b, _ := json.Marshal(tr)
			for _, a := range tc.assertions {
				if strings.Contains(string(b), a) {
					t.Fatal("the trace holds the assertion")
				}
			}
		})
	}
}

// forge re-signs nothing: it swaps the payload of a token signed by one
// issuer for one naming another, keeping the signature.
func forge(token, iss string) string {
	parts := strings.Split(token, ".")
	var claims map[string]any
	attest.UnverifiedSegment(token, 1, &claims)
	claims["iss"] = iss
	b, _ := json.Marshal(claims)
	return parts[0] + "." + b64(b) + "." + parts[2]
}

func TestNewProblems(t *testing.T) {
	f := newFixture(t)
	k := f.keys(t, f.edr)
	for _, tc := range []struct {
		name string
		cfg  posture.AssertionConfig
		want string
	}{
		{"no binding", posture.AssertionConfig{Name: "edr", Keys: k}, `bind.identity ""`},
		{"no providers", posture.AssertionConfig{Name: "edr", Keys: k, BindIdentity: "subject"}, `bind.providers: name the providers`},
		{"bad binding", posture.AssertionConfig{Name: "edr", Keys: k, BindIdentity: "instance_id"}, `bind.identity "instance_id"`},
		{"preset", posture.AssertionConfig{Name: "edr", Keys: k, BindIdentity: "subject", Preset: "acme"}, `preset "acme"`},
		{"no keys", posture.AssertionConfig{Name: "edr", BindIdentity: "subject"}, "no issuer keys"},
	} {
		if _, err := posture.New(nil, []posture.AssertionConfig{tc.cfg}, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	_, err := posture.New(nil, []posture.AssertionConfig{{Name: "edr", Keys: k, BindIdentity: "subject", BindProviders: []string{"gce"}}, {Name: "edr", Keys: k, BindIdentity: "subject", BindProviders: []string{"gce"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "defined twice") || !strings.Contains(err.Error(), "another source") {
		t.Errorf("twice: %v", err)
	}
}

// pullServer is a loopback posture service.
type pullServer struct {
	*httptest.Server
	calls   atomic.Int64
	mode    atomic.Value // string
	lastReq atomic.Value // the identity asked about
}

func newPullServer(t testing.TB) *pullServer {
	ps := &pullServer{}
	ps.mode.Store("ok")
	ps.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.calls.Add(1)
		var req struct {
			Identity struct {
				Provider, Subject string
				Attributes        map[string]any
			}
		}
		json.NewDecoder(r.Body).Decode(&req)
		ps.lastReq.Store(req.Identity.Provider + "/" + req.Identity.Subject)
		switch ps.mode.Load().(string) {
		case "ok":
			w.Header().Set("Content-Type", "application/json")
			compliant := req.Identity.Subject == workload.Subject
			json.NewEncoder(w).Encode(map[string]any{"compliant": compliant, "score": 81, "managed": true})
		case "down":
			http.Error(w, "down", http.StatusServiceUnavailable)
		case "slow":
			time.Sleep(600 * time.Millisecond)
			w.Write([]byte(`{"compliant": true, "score": 99}`))
		case "big":
			w.Write([]byte(`{"compliant": true, "pad": "` + strings.Repeat("x", 70_000) + `"}`))
		case "redirect":
			http.Redirect(w, r, "https://127.0.0.1:1/elsewhere", http.StatusTemporaryRedirect)
		case "notjson":
			w.Write([]byte(`[1, 2]`))
		}
	}))
	t.Cleanup(ps.Close)
	return ps
}

func (ps *pullServer) pull(t testing.TB, cfg posture.PullConfig) *posture.Pull {
	t.Helper()
	cfg.Name, cfg.URL = "mdm", ps.URL+"/posture"
	cfg.Fetcher = federation.NewFetcher(federation.FetcherOptions{Transport: ps.Client().Transport,
		Timeout: 300 * time.Millisecond, MaxBytes: 64 << 10, NoRedirects: true})
	p, err := posture.NewPull(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const mdmMap = `
id: managed-agents
match:
  provider: gce
  subject_pattern: ".*"
  conditions:
    - context.mdm.compliant == true && context.mdm.score > 80
grant:
  client_id: agent
  audiences: [https://mcp.example/tools]
`

func TestPull(t *testing.T) {
	f := newFixture(t)
	e := engine(t, mdmMap)
	for _, tc := range []struct {
		mode    string
		onError posture.OnError
		status  string
		reason  string
	}{
		{mode: "ok", status: "present"},
		{mode: "down", status: "unavailable", reason: "unreachable: federation: fetch failed: POST"},
		{mode: "slow", status: "unavailable", reason: "unreachable"},
		{mode: "big", status: "unavailable", reason: "unreachable"},
		{mode: "redirect", status: "unavailable", reason: "unreachable"},
		{mode: "notjson", status: "unavailable", reason: "invalid_answer"},
		{mode: "down", onError: posture.Absent, status: "absent", reason: "unreachable"},
	} {
		t.Run(tc.mode+"/"+string(tc.onError), func(t *testing.T) {
			ps := newPullServer(t)
			ps.mode.Store(tc.mode)
			s, err := posture.New(func() time.Time { return f.now }, nil, []*posture.Pull{ps.pull(t, posture.PullConfig{OnError: tc.onError})})
			if err != nil {
				t.Fatal(err)
			}
			got := s.Evaluate(context.Background(), workload, nil, nil)
			if len(got) != 1 || got[0].Status != tc.status || !strings.HasPrefix(got[0].Reason, tc.reason) {
				t.Fatalf("%+v, want %s with a reason starting %q", got, tc.status, tc.reason)
			}
			if who, _ := ps.lastReq.Load().(string); who != "gce/"+workload.Subject {
				t.Errorf("the service was asked about %q", who)
			}
			req := trustmaps.Request{Audience: "https://mcp.example/tools", Posture: got, Time: f.now}
			_, err = e.Decide(context.Background(), workload, req)
			if granted := err == nil; granted != (tc.status == "present") {
				t.Fatalf("granted %v (%v)", granted, err)
			}
			tr := e.Explain(context.Background(), workload, req)
			switch {
			case tc.status == "unavailable" && !strings.Contains(tr.Maps[0].Outcome, `posture source "mdm" unavailable: `+tc.reason):
				t.Errorf("trace outcome %q does not say why", tr.Maps[0].Outcome)
			case tc.status == "absent" && tr.Maps[0].Outcome != "condition 1 failed: no such key: mdm":
				t.Errorf("trace outcome %q", tr.Maps[0].Outcome)
			}
		})
	}
}

func TestPullCache(t *testing.T) {
	f := newFixture(t)
	ps := newPullServer(t)
	p := ps.pull(t, posture.PullConfig{CacheEntries: 2, CacheTTL: 200 * time.Millisecond})
	s, err := posture.New(func() time.Time { return f.now }, nil, []*posture.Pull{p})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 5 {
		s.Evaluate(ctx, workload, nil, nil)
	}
	if n := ps.calls.Load(); n != 1 {
		t.Fatalf("%d calls for one identity asked five times, want 1 (cached)", n)
	}
	other := func(i int) attest.Identity {
		return attest.Identity{Provider: "gce", Subject: "other-" + string(rune('a'+i))}
	}
	for i := range 3 {
		if got := s.Evaluate(ctx, other(i), nil, nil); got[0].Attributes["compliant"] != false {
			t.Fatalf("identity %d: %+v: one identity's answer served for another", i, got[0])
		}
	}
	if n := p.CacheLen(); n != 2 {
		t.Fatalf("cache holds %d identities, want its bound 2", n)
	}
	// A failure is not cached, and an entry expires with its TTL.
	ps.mode.Store("down")
	if got := s.Evaluate(ctx, other(9), nil, nil); got[0].Status != "unavailable" {
		t.Fatalf("%+v", got[0])
	}
	ps.mode.Store("ok")
	if got := s.Evaluate(ctx, other(9), nil, nil); got[0].Status != "present" {
		t.Fatalf("after a failure: %+v, want a new fetch", got[0])
	}
	f.now = f.now.Add(300 * time.Millisecond) // past the TTL, on the set's clock
	before := ps.calls.Load()
	s.Evaluate(ctx, workload, nil, nil)
	if ps.calls.Load() != before+1 {
		t.Fatal("an entry past its TTL was served from the cache")
	}
	// Finding 5 of the decision review: two hosts of one subject (same
	// provider and subject, other attributes) are each asked for their own
	// posture; an answer is reused only for the same request.
	host := func(node string) attest.Identity {
		return attest.Identity{Provider: "k8s", Subject: "system:serviceaccount:prod:agent", Attributes: map[string]any{"node": node}}
	}
	before = ps.calls.Load()
	s.Evaluate(ctx, host("node-a"), nil, nil)
	s.Evaluate(ctx, host("node-b"), nil, nil)
	s.Evaluate(ctx, host("node-a"), nil, nil)
	if n := ps.calls.Load() - before; n != 2 {
		t.Fatalf("%d calls for two hosts of one subject (one asked twice), want 2", n)
	}
	if _, err := posture.NewPull(posture.PullConfig{Name: "x", Fetcher: federation.NewFetcher(federation.FetcherOptions{}), CacheTTL: time.Hour}); err == nil ||
		!strings.Contains(err.Error(), "cache_ttl 1h0m0s is out of range") {
		t.Fatalf("an hour's cache: %v", err)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestNotRead: a source no map reads is not asked, and its assertions are
// not verified (nor reported).
func TestNotRead(t *testing.T) {
	f := newFixture(t)
	ps := newPullServer(t)
	s, err := posture.New(func() time.Time { return f.now }, []posture.AssertionConfig{{Name: "edr", Keys: f.keys(t, f.edr),
		BindIdentity: "attributes.google.compute_engine.instance_id", BindProviders: []string{"gce"}}}, []*posture.Pull{ps.pull(t, posture.PullConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	only := func(name string) func(string) bool { return func(s string) bool { return s == name } }
	got := s.Evaluate(ctx, workload, []string{f.report(f.edr, host, true, 90, time.Minute)}, only("edr"))
	if len(got) != 1 || got[0].Source != "edr" || got[0].Status != "present" || ps.calls.Load() != 0 {
		t.Fatalf("edr read: %+v, %d pulls", got, ps.calls.Load())
	}
	got = s.Evaluate(ctx, workload, []string{f.report(f.edr, host, true, 90, time.Minute), f.report(f.other, host, true, 90, time.Minute)}, only("mdm"))
	if len(got) != 2 || got[0].Source != "mdm" || got[1].Status != "ignored" || ps.calls.Load() != 1 {
		t.Fatalf("mdm read: %+v, %d pulls", got, ps.calls.Load())
	}
	if got := s.Evaluate(ctx, workload, nil, only("nothing")); len(got) != 0 {
		t.Fatalf("nothing read: %+v", got)
	}
}

// FuzzEvaluate: whatever a request carries as posture_token, evaluation
// never fails open: no source is present without its issuer's signature.
func FuzzEvaluate(f *testing.F) {
	fx := newFixture(f)
	s := fx.set(f, "")
	f.Add(fx.report(fx.other, host, true, 99, time.Minute))
	f.Add(forge(fx.report(fx.other, host, true, 99, time.Minute), fx.edr.URL))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, assertion string) {
		for _, p := range s.Evaluate(context.Background(), workload, []string{assertion}, nil) {
			if p.Status == attest.PosturePresent {
				t.Fatalf("present from a token the test did not sign: %+v", p)
			}
		}
	})
}
