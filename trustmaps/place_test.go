package trustmaps_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/internal/geoip"
	"github.com/mcpsts/mcpsts/internal/geoip/geoiptest"
	"github.com/mcpsts/mcpsts/trustmaps"
)

func geoDB(t testing.TB) *geoip.DB {
	t.Helper()
	db, err := geoip.Open(geoiptest.Write(t, t.TempDir(), map[string]geoiptest.Entry{
		"81.2.69.0/24":    {Country: "DE", Continent: "EU", ASN: 3320, Organization: "Deutsche Telekom AG"},
		"2a02:8100::/32":  {Country: "FR", Continent: "EU", ASN: 12322},
		"216.160.83.0/24": {Country: "US", Continent: "NA", ASN: 209},
		"10.20.0.0/16":    {}, // the office: known to nobody's database
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func geoMap(conditions ...string) string {
	var b strings.Builder
	b.WriteString("id: eu-agent\nmatch:\n  provider: k8s\n  subject: agent\n  conditions:\n")
	for _, c := range conditions {
		b.WriteString("    - '" + c + "'\n")
	}
	b.WriteString("grant:\n  client_id: agent\n  audiences: [https://mcp.example/tools]\n")
	return b.String()
}

func TestGeolocation(t *testing.T) {
	db := geoDB(t)
	id := attest.Identity{Provider: "k8s", Subject: "agent"}
	for _, tc := range []struct {
		cond string
		ip   string
		want bool
	}{
		{`ip(request.source_ip).country() == "DE"`, "81.2.69.160", true},
		{`ip(request.source_ip).country() == "DE"`, "216.160.83.56", false},
		{`ip(request.source_ip).in_country(["DE", "FR", "AT"])`, "2a02:8100::7", true}, // IPv6
		{`ip(request.source_ip).in_country(["DE", "FR", "AT"])`, "216.160.83.56", false},
		{`ip(request.source_ip).continent() == "EU"`, "2a02:8100::7", true},
		{`ip(request.source_ip).asn() == 3320`, "81.2.69.1", true},
		{`ip(request.source_ip).asn() == 3320`, "2a02:8100::7", false},
		{`ip(request.source_ip).asn() in [209, 701]`, "216.160.83.56", true},
		// An unknown address: empty values, never an error that allows.
		{`ip(request.source_ip).country() == ""`, "192.0.2.1", true},
		{`ip(request.source_ip).in_country(["DE"])`, "192.0.2.1", false},
		{`!ip(request.source_ip).in_country(["RU"])`, "192.0.2.1", true},
		{`ip(request.source_ip).asn() == 0`, "2001:db8::1", true},
		// EU addresses or the office network.
		{`ip(request.source_ip).continent() == "EU" || ip(request.source_ip).in_cidr("10.20.0.0/16")`, "10.20.3.4", true},
		{`ip(request.source_ip).continent() == "EU" || ip(request.source_ip).in_cidr("10.20.0.0/16")`, "216.160.83.56", false},
	} {
		e, err := trustmaps.Options{Places: db}.Compile(trustmaps.Document{Name: "geo.yaml", Data: []byte(geoMap(tc.cond))})
		if err != nil {
			t.Fatal(err)
		}
		req := trustmaps.Request{Audience: "https://mcp.example/tools", SourceIP: tc.ip, Time: time.Now()}
		_, err = e.Decide(context.Background(), id, req)
		if got := err == nil; got != tc.want {
			t.Errorf("%s from %s: granted %v (%v), want %v", tc.cond, tc.ip, got, err, tc.want)
		}
		tr := e.Explain(context.Background(), id, req)
		if tr.Place == nil || tr.Place.SourceIP != tc.ip {
			t.Errorf("%s from %s: trace place %+v", tc.cond, tc.ip, tr.Place)
		}
	}
	e, _ := trustmaps.Options{Places: db}.Compile(trustmaps.Document{Name: "geo.yaml", Data: []byte(geoMap(`ip(request.source_ip).country() == "DE"`))})
	tr := e.Explain(context.Background(), id, trustmaps.Request{Audience: "https://mcp.example/tools", SourceIP: "81.2.69.160"})
	if want := (trustmaps.Place{Country: "DE", Continent: "EU", ASN: 3320}); tr.Place.Place != want {
		t.Errorf("trace place %+v, want %+v", tr.Place.Place, want)
	}
	if !e.ReadsPlace() {
		t.Error("ReadsPlace: false")
	}
}

// TestGeolocationNeedsDatabase: a map that uses geolocation does not
// compile without a database, with a message that says so.
func TestGeolocationNeedsDatabase(t *testing.T) {
	for _, cond := range []string{
		`ip(request.source_ip).country() == "DE"`,
		`ip(request.source_ip).in_country(["DE"])`,
		`request.mtls || ip(request.source_ip).asn() == 3320`,
		`[1].exists(x, ip(request.source_ip).continent() == "EU")`,
	} {
		_, err := trustmaps.Compile(trustmaps.Document{Name: "geo.yaml", Data: []byte(geoMap(cond))})
		var p *trustmaps.Problem
		if !errors.As(err, &p) || p.Path != "match.conditions[0]" || !strings.Contains(err.Error(), "no geolocation database is configured (geoip.database)") {
			t.Errorf("%s: %v", cond, err)
		}
	}
	// Without geolocation, the same maps compile as before.
	if _, err := trustmaps.Compile(trustmaps.Document{Name: "cidr.yaml", Data: []byte(geoMap(`ip(request.source_ip).in_cidr("10.0.0.0/8")`))}); err != nil {
		t.Fatal(err)
	}
}

// TestPostureReads: a map that reads an unavailable source is false,
// whatever the form of the read; a map that does not read it is not
// affected; the trace lists what was read.
func TestPostureReads(t *testing.T) {
	id := attest.Identity{Provider: "k8s", Subject: "agent"}
	unavailable := []attest.Posture{
		{Source: "edr", Status: attest.PostureUnavailable, Reason: "unreachable: down"},
		{Source: "mdm", Status: attest.PosturePresent, Attributes: map[string]any{"managed": true}},
	}
	for _, tc := range []struct {
		cond    string
		granted bool
		read    string // of edr, in the trace
	}{
		{`context.mdm.managed`, true, ""},
		{`context.?mdm.?managed.orValue(false)`, true, ""},
		{`context.edr.compliant || context.mdm.managed`, false, "compliant"},
		{`!has(context.edr) || context.mdm.managed`, false, "*"},
		{`context["edr"]["score"] > 0 || context.mdm.managed`, false, "score"},
		{`context.?edr.?score.orValue(0) >= 0`, false, "score"},
		{`size(context) > 0`, false, "*"},
		{`context.exists(k, k == "mdm")`, false, "*"},
		{`"context.edr" != "" && context.mdm.managed`, true, ""}, // a string is not a read
	} {
		e := mustCompile(t, geoMap(tc.cond))
		req := trustmaps.Request{Audience: "https://mcp.example/tools", Posture: unavailable}
		_, err := e.Decide(context.Background(), id, req)
		if (err == nil) != tc.granted {
			t.Errorf("%s: granted %v (%v), want %v", tc.cond, err == nil, err, tc.granted)
		}
		if !tc.granted && (err == nil || !strings.Contains(err.Error(), `posture source "edr" unavailable: unreachable: down`)) {
			t.Errorf("%s: %v does not say why", tc.cond, err)
		}
		tr := e.Explain(context.Background(), id, req)
		if got := strings.Join(tr.Posture[0].Read, ","); got != tc.read {
			t.Errorf("%s: trace reads %q of edr, want %q", tc.cond, got, tc.read)
		}
	}
}

func mustCompile(t *testing.T, doc string) *trustmaps.Engine {
	t.Helper()
	e, err := trustmaps.Compile(trustmaps.Document{Name: "maps.yaml", Data: []byte(doc)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func BenchmarkDecideGeolocation(b *testing.B) {
	db := geoDB(b)
	id := attest.Identity{Provider: "k8s", Subject: "agent"}
	ctx := context.Background()
	for _, bc := range []struct{ name, cond string }{
		{"cidr", `ip(request.source_ip).in_cidr("81.2.69.0/24")`},
		{"country", `ip(request.source_ip).in_country(["DE", "FR"])`},
	} {
		e, err := trustmaps.Options{Places: db}.Compile(trustmaps.Document{Name: "geo.yaml", Data: []byte(geoMap(bc.cond))})
		if err != nil {
			b.Fatal(err)
		}
		req := trustmaps.Request{Audience: "https://mcp.example/tools", SourceIP: "81.2.69.160"}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, id, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
