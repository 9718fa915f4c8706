package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/devpki"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testFiles makes a CA-issued server certificate (the dev CA's) and returns
// its paths.
func testFiles(t *testing.T) (cert, key string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := devpki.Ensure(dir, now); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
}

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mcpsts.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// noEnv is an environment with only a key-encryption key in it.
func noEnv(k string) string {
	if k == KEKEnv {
		return "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	}
	return ""
}

func TestLoadValid(t *testing.T) {
	cert, key := testFiles(t)
	file := write(t, `
issuer: https://sts.example.com/tenant1
listen: 0.0.0.0:9443
data_dir: `+t.TempDir()+`
store: postgres://mcpsts@db.internal:5432/mcpsts
tls:
  cert_file: `+cert+`
  key_file: `+key+`
  min_version: 1.3
server:
  read_timeout: 20s
  max_body_bytes: 65536
log:
  level: debug
  format: json
`)
	cfg, err := Load(file, noEnv, now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Defaults()
	if cfg.Issuer != "https://sts.example.com/tenant1" || cfg.Listen != "0.0.0.0:9443" ||
		cfg.TLS.MinVersion != "1.3" || cfg.Server.ReadTimeout != 20*time.Second ||
		cfg.Server.MaxBodyBytes != 65536 || cfg.Log.Level != "debug" || cfg.Log.Format != "json" {
		t.Errorf("values not read: %+v", cfg)
	}
	if cfg.Server.WriteTimeout != want.Server.WriteTimeout || cfg.Server.MaxHeaderBytes != want.Server.MaxHeaderBytes {
		t.Errorf("unset fields lost their defaults: %+v", cfg.Server)
	}
	if cfg.StoreURL() != "postgres://mcpsts@db.internal:5432/mcpsts" {
		t.Errorf("StoreURL = %q", cfg.StoreURL())
	}
}

func TestLoadEnvOverrides(t *testing.T) {
	cert, key := testFiles(t)
	dir := t.TempDir()
	file := write(t, "issuer: https://file.example\ntls: {cert_file: /nope, key_file: /nope}\n")
	env := map[string]string{
		KEKEnv:                 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"MCPSTS_ISSUER":        "https://env.example",
		"MCPSTS_DATA_DIR":      dir,
		"MCPSTS_TLS_CERT_FILE": cert,
		"MCPSTS_TLS_KEY_FILE":  key,
		"MCPSTS_LOG_LEVEL":     "warn",
	}
	cfg, err := Load(file, func(k string) string { return env[k] }, now)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Issuer != "https://env.example" || cfg.Log.Level != "warn" || cfg.TLS.CertFile != cert {
		t.Errorf("environment did not override: %+v", cfg)
	}
	if cfg.StoreURL() != "sqlite:"+filepath.Join(dir, "mcpsts.db") {
		t.Errorf("default StoreURL = %q", cfg.StoreURL())
	}

	env["MCPSTS_LISTEN"] = "no-port"
	_, err = Load(file, func(k string) string { return env[k] }, now)
	if err == nil || !strings.Contains(err.Error(), `listen (from MCPSTS_LISTEN): "no-port" is not host:port`) {
		t.Fatalf("bad MCPSTS_LISTEN: err = %v", err)
	}
	if len(EnvVars()) != len(envOverrides) || EnvVars()[3] != "MCPSTS_STORE" {
		t.Errorf("EnvVars = %v", EnvVars())
	}
}

// TestLoadErrors covers every class of configuration error; each case
// asserts the exact messages, which must name the file, line and path.
func TestLoadErrors(t *testing.T) {
	cert, key := testFiles(t)
	good := "issuer: https://sts.example\ntls:\n  cert_file: " + cert + "\n  key_file: " + key + "\n"
	notDir := write(t, "x")
	tests := []struct {
		name string
		yaml string
		want []string // each must appear; len(want) is the number of problems
	}{
		{"not YAML", "issuer: [unclosed", []string{"mcpsts.yaml: not valid YAML: "}},
		{"two documents", good + "---\nlisten: x\n", []string{"mcpsts.yaml:5: holds more than one YAML document"}},
		{"root is a list", "- a\n- b\n", []string{"mcpsts.yaml:1: the document must be a mapping of keys to values, got a list"}},
		{"section is a value", good + "server: fast\n", []string{"mcpsts.yaml:5: server: a section must be a mapping of keys to values, got a single value"}},
		{"empty file", "", []string{
			"mcpsts.yaml: issuer: required",
			"mcpsts.yaml: tls.cert_file: required",
			"mcpsts.yaml: tls.key_file: required",
		}},
		{"unknown keys", good + "lissen: :443\nserver:\n  read_timeot: 5s\n", []string{
			"mcpsts.yaml:5: lissen: unknown field (known: admin, audiences, audit, authorization, aws, data_dir, dpop, geoip, introspection, issuer, keys, limits, listen, log, posture, providers, registration, server, spiffe, store, tls, tokens, trust_maps)",
			"mcpsts.yaml:7: server.read_timeot: unknown field (known: idle_timeout, max_body_bytes",
		}},
		{"repeated key", good + "issuer: https://other.example\n", []string{"mcpsts.yaml:5: issuer: set twice (first at line 1)"}},
		{"wrong types", good + "listen: [a, b]\nserver:\n  read_timeout: soon\n  max_body_bytes: lots\n  idle_timeout: 10\ntls2: x\n", []string{
			"mcpsts.yaml:5: listen: want a string, got a list",
			`mcpsts.yaml:7: server.read_timeout: want a duration such as 30s or 5m, got "soon"`,
			`mcpsts.yaml:8: server.max_body_bytes: want a whole number, got "lots"`,
			`mcpsts.yaml:9: server.idle_timeout: want a duration such as 30s or 5m, got "10"`,
			"mcpsts.yaml:10: tls2: unknown field",
		}},
		{"bool for string", good + "log:\n  level: true\n", []string{"mcpsts.yaml:6: log.level: want a string, got true (quote it)"}},
		{"bad bool", "issuer: https://sts.example\ntls:\n  cert_file: " + cert + "\n  key_file: " + key + "\n  allow_self_signed: maybe\n", []string{
			`mcpsts.yaml:5: tls.allow_self_signed: want true or false, got "maybe"`,
		}},
		{"issuer http", "issuer: http://sts.example\ntls: {cert_file: " + cert + ", key_file: " + key + "}\n", []string{`mcpsts.yaml:1: issuer: "http://sts.example" must use https`}},
		{"issuer query", "issuer: https://sts.example/?t=1\ntls: {cert_file: " + cert + ", key_file: " + key + "}\n", []string{"may not have a query"}},
		{"issuer fragment", "issuer: https://sts.example/#x\ntls: {cert_file: " + cert + ", key_file: " + key + "}\n", []string{"may not have a fragment"}},
		{"issuer no host", "issuer: https:///path\ntls: {cert_file: " + cert + ", key_file: " + key + "}\n", []string{"has no host"}},
		{"issuer userinfo", "issuer: https://me@sts.example\ntls: {cert_file: " + cert + ", key_file: " + key + "}\n", []string{"may not hold user information"}},
		{"listen", good + "listen: 127.0.0.1:99999\n", []string{`mcpsts.yaml:5: listen: port "99999" is not a number from 0 to 65535`}},
		{"listen host", good + "listen: example.com:443\n", []string{`listen: host "example.com" must be an IP address or localhost`}},
		{"data_dir is a file", good + "data_dir: " + notDir + "\n", []string{"mcpsts.yaml:5: data_dir: " + notDir + " is not a directory"}},
		{"store scheme", good + "store: mysql://x\n", []string{"mcpsts.yaml:5: store: want sqlite:PATH or a postgres:// URL"}},
		{"store sqlite no path", good + "store: 'sqlite:'\n", []string{"store: sqlite: needs a file path"}},
		{"tls files missing", "issuer: https://sts.example\ntls:\n  cert_file: /no/cert.pem\n  key_file: /no/key.pem\n", []string{
			"mcpsts.yaml:3: tls.cert_file: no such file or directory (/no/cert.pem)",
			"mcpsts.yaml:4: tls.key_file: no such file or directory (/no/key.pem)",
		}},
		{"tls min version", good + "  min_version: '1.1'\n", []string{`mcpsts.yaml:5: tls.min_version: "1.1" is not allowed (want "1.2" or "1.3")`}},
		{"limits", good + "server:\n  read_header_timeout: 0s\n  shutdown_timeout: 1h\n  max_header_bytes: 10\n  max_body_bytes: 1073741824\n", []string{
			"server.read_header_timeout: 0s is out of range (want more than 0, at most 1m0s)",
			"server.shutdown_timeout: 1h0m0s is out of range (want more than 0, at most 10m0s)",
			"server.max_header_bytes: 10 is out of range (want 1024 to 1048576)",
			"server.max_body_bytes: 1073741824 is out of range (want 1024 to 67108864)",
		}},
		{"keys", good + "keys:\n  algorithm: HS256\n  rotation_period: 1h\n  rsa_bits: 1024\n  kek_file: /no/kek\n", []string{
			`mcpsts.yaml:6: keys.algorithm: "HS256" is not one of ES256, EdDSA, RS256`,
			"mcpsts.yaml:7: keys.rotation_period: 1h0m0s is out of range (want 3h to 2160h)",
			"mcpsts.yaml:8: keys.rsa_bits: 1024 is not allowed",
			"mcpsts.yaml:9: keys.kek_file: no such file or directory (/no/kek)",
		}},
		{"kms needs ES256", good + "keys:\n  algorithm: RS256\n  aws_kms: {key_id: alias/mcpsts}\n", []string{
			"mcpsts.yaml:6: keys.algorithm: AWS KMS keys sign with ES256",
		}},
		{"tokens", good + "tokens:\n  default_ttl: 2h\n  max_ttl: 30s\n", []string{
			"mcpsts.yaml:6: tokens.default_ttl: 2h0m0s is out of range (want 1m to 1h)",
			"mcpsts.yaml:7: tokens.max_ttl: 30s is out of range (want 1m to 1h)",
		}},
		{"revocation cache beyond its bound", good + "tokens:\n  revocation_cache_for: 5s\n", []string{
			"mcpsts.yaml:6: tokens.revocation_cache_for: 5s is out of range (want more than 0, at most 1s)",
		}},
		{"refresh family lifetimes", good + "authorization: {refresh_ttl: 48h, refresh_max_lifetime: 24h}\n", []string{
			"authorization.refresh_max_lifetime: 24h0m0s is out of range (want 0 for 30 days, at least refresh_ttl, at most 8784h)",
		}},
		{"default above max", good + "tokens:\n  default_ttl: 30m\n  max_ttl: 10m\n", []string{
			"mcpsts.yaml:6: tokens.default_ttl: 30m0s exceeds tokens.max_ttl (10m0s)",
		}},
		{"providers", good + `audiences: ["https://sts.example", "not a uri"]
providers:
  - name: k8s
    issuer: https://kubernetes.default.svc
    discovery: true
    jwks_uri: https://kubernetes.default.svc/keys
    algorithms: [RS256, HS256]
    preset: openshift
    leeway: 10m
    refresh: {min: 2h, max: 1h}
  - name: k8s
    issuer: http://gh.example
    jwks_file: /no/jwks.json
  - issuer: https://kubernetes.default.svc
    jwks: '{"keys":[]}'
    single_use: maybe
`, []string{
			// What could not be decoded first, then every other problem of
			// the same file, at once; single_use is not checked again.
			"mcpsts.yaml:20: providers[2].single_use: want true or false, got \"maybe\"",
			`mcpsts.yaml:5: audiences[1]: "not a uri" is not an absolute URI without fragment`,
			`mcpsts.yaml:11: providers[0].algorithms[1]: "HS256" is not allowed`,
			`mcpsts.yaml:9: providers[0].discovery: want exactly one key source`,
			`mcpsts.yaml:13: providers[0].leeway: 10m0s is out of range`,
			`mcpsts.yaml:12: providers[0].preset: "openshift" is not one of`,
			`mcpsts.yaml:14: providers[0].refresh.min: 2h0m0s exceeds refresh.max (1h0m0s)`,
			`mcpsts.yaml:16: providers[1].issuer: "http://gh.example" must use https`,
			`mcpsts.yaml:17: providers[1].jwks_file: no such file or directory (/no/jwks.json)`,
			`mcpsts.yaml:15: providers[1].name: "k8s" is also the name of providers[0]`,
			`mcpsts.yaml:18: providers[2].name: required`,
			`mcpsts.yaml:18: providers[2].issuer: "https://kubernetes.default.svc" is also the issuer of providers[0]`,
		}},
		{"id_jag_max_lifetime", good + `providers:
  - {name: corp, kind: user, issuer: https://corp.example, jwks: '{"keys":[]}', id_jag: true, id_jag_max_lifetime: 2h}
  - {name: ci, issuer: https://ci.example, jwks: '{"keys":[]}', id_jag_max_lifetime: 1m}
`, []string{
			`mcpsts.yaml:6: providers[0].id_jag_max_lifetime: 2h0m0s is out of range (want 0 for 5m, at most 1h)`,
			`mcpsts.yaml:7: providers[1].id_jag_max_lifetime: goes with id_jag: true`,
		}},
		{"source prefixes", good + "limits: {source_prefix_ipv4: 33, source_prefix_ipv6: 16}\n", []string{
			`mcpsts.yaml:5: limits.source_prefix_ipv4: 33 is out of range (want 8 to 32, or 0 for 32)`,
			`mcpsts.yaml:5: limits.source_prefix_ipv6: 16 is out of range (want 32 to 128, or 0 for 64)`,
		}},
		{"an unknown key beside the other problems", good + `listn: 127.0.0.1:9
tokens: {default_ttl: forever, max_ttl: 2h}
`, []string{
			`mcpsts.yaml:5: listn: unknown field`,
			`mcpsts.yaml:6: tokens.default_ttl: `,
			`mcpsts.yaml:6: tokens.max_ttl: 2h0m0s`,
		}},
		{"provider values", good + `providers:
  - name: k8s
    issuer: https://kubernetes.default.svc
    discovery: true
    jwks_uri: https://kubernetes.default.svc/keys
    algorithms: [RS256, HS256]
    preset: openshift
    leeway: 10m
    refresh: {min: 2h, max: 1h}
  - name: k8s
    issuer: http://gh.example
    jwks_file: /no/jwks.json
  - issuer: https://kubernetes.default.svc
    jwks: '{"keys":[]}'
`, []string{
			`mcpsts.yaml:10: providers[0].algorithms[1]: "HS256" is not allowed`,
			"mcpsts.yaml:8: providers[0].discovery: want exactly one key source of discovery: true, jwks_uri, jwks and jwks_file; got 2",
			"mcpsts.yaml:12: providers[0].leeway: 10m0s is out of range (want 0 for the default, at most 5m0s)",
			`mcpsts.yaml:11: providers[0].preset: "openshift" is not one of generic, kubernetes, github-actions, gitlab, google, azure`,
			"mcpsts.yaml:13: providers[0].refresh.min: 2h0m0s exceeds refresh.max (1h0m0s)",
			`mcpsts.yaml:15: providers[1].issuer: "http://gh.example" must use https`,
			"mcpsts.yaml:16: providers[1].jwks_file: no such file or directory (/no/jwks.json)",
			`mcpsts.yaml:14: providers[1].name: "k8s" is also the name of providers[0]`,
			"mcpsts.yaml:17: providers[2].name: required",
			`mcpsts.yaml:17: providers[2].issuer: "https://kubernetes.default.svc" is also the issuer of providers[0]`,
		}},
		// Finding 5 of the security review: provider names are one
		// namespace (OIDC providers, trust domains, AWS) in a safe alphabet.
		{"provider names", good + `aws: {enabled: true, provider: amazon}
spiffe:
  trust_domains:
    - {name: "prod.example.org", bundle_file: ` + cert + `}
    - {name: aws, bundle_file: ` + cert + `}
providers:
  - {name: aws, issuer: "https://a.example", jwks: '{"keys":[]}'}
  - {name: "prod.example.org/ci", issuer: "https://b.example", jwks: '{"keys":[]}'}
  - {name: "prod.example.org", issuer: "https://c.example", jwks: '{"keys":[]}'}
  - {name: Upper, issuer: "https://d.example", jwks: '{"keys":[]}'}
  - {name: amazon, issuer: "https://e.example", jwks: '{"keys":[]}'}
`, []string{
			`spiffe.trust_domains[1].name: "aws" is the name of the AWS provider: provider names are one namespace`,
			`mcpsts.yaml:11: providers[0].name: "aws" is the name of the AWS provider (identities attested through STS): provider names are one namespace`,
			`mcpsts.yaml:11: providers[0].name: "aws" is also spiffe.trust_domains[1]: provider names are one namespace`,
			`mcpsts.yaml:12: providers[1].name: "prod.example.org/ci" is not a provider name`,
			`mcpsts.yaml:13: providers[2].name: "prod.example.org" is also spiffe.trust_domains[0]: provider names are one namespace`,
			`mcpsts.yaml:14: providers[3].name: "Upper" is not a provider name`,
			`mcpsts.yaml:15: providers[4].name: "amazon" is the name of the AWS provider (aws.provider): provider names are one namespace`,
		}},
		{"the development provider", good + `providers:
  - {name: dev, issuer: "https://a.example", jwks: '{"keys":[]}'}
  - {name: mine, issuer: "https://dev.mcpsts.invalid", jwks: '{"keys":[]}'}
`, []string{
			`mcpsts.yaml:6: providers[0].name: "dev" is the development provider of serve --dev, trusted only there`,
			`mcpsts.yaml:7: providers[1].issuer: "https://dev.mcpsts.invalid" is the development provider of serve --dev, trusted only there`,
		}},
		{"logins", good + `providers:
  - name: ci
    issuer: "https://a.example"
    jwks: '{"keys":[]}'
    login: {client_id: mcpsts, client_secret_env: CI_SECRET}
  - name: corp
    kind: user
    issuer: "https://b.example"
    jwks: '{"keys":[]}'
    login: {client_secret_env: X, client_secret_file: /no/secret, token_endpoint: "http://idp.example/token"}
  - name: partner
    kind: user
    issuer: "https://c.example"
    jwks: '{"keys":[]}'
    login: {client_id: mcpsts, client_secret_env: PARTNER_SECRET}
authorization: {refresh_ttl: 9000h, scope_descriptions: {"mail:read": ""}, scope_descriptions_by_language: {de: {"mail:read": "Mails lesen"}, fr: {"mail:read": ""}}}
`, []string{
			"providers[0].login: only a provider of kind user signs people in",
			"providers[1].login: exactly one of private_key_file, client_secret_file and client_secret_env (a secret never goes in this file)",
			"providers[1].login: authorization_endpoint and token_endpoint go together",
			"providers[1].login.client_id: required",
			"providers[1].login.client_secret_file: no such file or directory (/no/secret)",
			`providers[1].login.token_endpoint: "http://idp.example/token" is not an https URL`,
			"providers[2].login: providers[1] has the login already: people sign in at one provider",
			"authorization.refresh_ttl: 9000h0m0s is out of range",
			"authorization.scope_descriptions.mail:read: a scope name and a description of at most 200 characters",
			`authorization.scope_descriptions_by_language.de: "de" is not a language of the pages (en, fr)`,
			"authorization.scope_descriptions_by_language.fr.mail:read: a scope name and a description of at most 200 characters",
		}},
		{"trust maps", good + "trust_maps: {paths: [/no/maps], reload_interval: 100ms}\n", []string{
			"mcpsts.yaml:5: trust_maps.paths[0]: no such file or directory (/no/maps)",
			"mcpsts.yaml:5: trust_maps.reload_interval: 100ms is out of range (want 1s to 1h)",
		}},
		{"admin", good + "admin: {audience: http://sts.example/admin, client_names: [ops]}\n", []string{
			`mcpsts.yaml:5: admin.audience: "http://sts.example/admin" is not an absolute https URI`,
			"mcpsts.yaml:5: admin.client_ca_file: required with client_names",
		}},
		{"admin CA without names", good + "admin: {client_ca_file: " + cert + "}\n", []string{
			"mcpsts.yaml:5: admin.client_names: required with client_ca_file",
		}},
		{"keys refresh", good + "keys:\n  refresh_interval: 500ms\n", []string{"mcpsts.yaml:6: keys.refresh_interval: 500ms is out of range (want 1s to 5m)"}},
		{"limits store", good + "limits:\n  store: redis://:hunter2@127.0.0.1:6379/0\n", []string{
			"mcpsts.yaml:6: limits.store: the Redis URL holds a password: put it in limits.redis_password_file"}},
		{"limits store kind", good + "limits:\n  store: mysql://db\n  redis_password_file: /nonexistent\n", []string{
			`mcpsts.yaml:6: limits.store: "mysql://db" is not memory, store or a redis:// URL`,
			"mcpsts.yaml:7: limits.redis_password_file: set, but limits.store is not a Redis URL"}},
		{"redis password file", good + "limits:\n  store: redis://127.0.0.1:6379/0?db=1\n  redis_password_file: " + notDir + "/x\n", []string{
			"mcpsts.yaml:6: limits.store: the Redis URL may not have query parameters or a fragment",
			"mcpsts.yaml:7: limits.redis_password_file: "}},
		{"limits", good + "limits:\n  per_identity: {rate: -1}\n  per_client: {rate: 5, burst: 0}\n", []string{
			"mcpsts.yaml:6: limits.per_identity.rate: -1 is out of range",
			"mcpsts.yaml:7: limits.per_client.burst: 0 is out of range (1 to 1e6)",
		}},
		{"spiffe", good + `spiffe:
  trust_domains:
    - {name: "prod.example.org", bundle_file: /no/bundle, workload_api: true}
    - {name: "bad/name", bundle_endpoint: {url: "http://x", profile: https_spiffe, endpoint_spiffe_id: "spiffe://other.org/e", initial_bundle_file: /no/b}}
    - {name: "prod.example.org", bundle_endpoint: {url: "https://x", profile: ftp}}
`, []string{
			"spiffe.trust_domains[0]: want exactly one bundle source of bundle_file, workload_api and bundle_endpoint; got 2",
			"spiffe.trust_domains[0].bundle_file: no such file or directory (/no/bundle)",
			`spiffe.trust_domains[1].name: "bad/name" is not a trust domain name`,
			`spiffe.trust_domains[1].bundle_endpoint.url: "http://x" is not an https URL`,
			`spiffe.trust_domains[1].bundle_endpoint.endpoint_spiffe_id: "spiffe://other.org/e" is not a SPIFFE ID of bad/name`,
			"spiffe.trust_domains[1].bundle_endpoint.initial_bundle_file: no such file or directory (/no/b)",
			`spiffe.trust_domains[2].name: "prod.example.org" is also spiffe.trust_domains[0]`,
			`spiffe.trust_domains[2].bundle_endpoint.profile: "ftp" is not https_web or https_spiffe`,
		}},
		{"posture", good + `posture:
  - {name: edr, kind: assertion, issuer: "https://edr.example", jwks_uri: "https://edr.example/keys", url: "https://x", on_error: allow}
  - {name: edr, kind: assertion, issuer: "https://edr2.example", discovery: true, bind: {identity: instance_id, providers: [gce, gce]}, preset: crowdstrike, max_age: 48h}
  - {name: mdm, kind: pull, url: "http://mdm.example/posture", cache_ttl: 1h, timeout: 1m, bind: {identity: subject}, on_error: maybe}
  - {name: x, kind: push}
geoip: {database: /no/geo.mmdb, reload_interval: 10ms}
server:
  trusted_proxies: ["10.0.0.0/8", "192.0.2.7", "proxy.example"]
`, []string{
			`mcpsts.yaml:6: posture[0].bind.identity: required: subject or attributes.<name>`,
			`mcpsts.yaml:6: posture[0].bind.providers: required: the providers whose identities these assertions describe`,
			`mcpsts.yaml:6: posture[0].on_error: "allow" is not offered: a source that fails must not grant; want deny or absent`,
			`mcpsts.yaml:6: posture[0].url: only for kind pull`,
			`mcpsts.yaml:7: posture[1].bind.identity: "instance_id" is not subject or attributes.<name>`,
			`mcpsts.yaml:7: posture[1].bind.providers[1]: "gce" is empty or named twice`,
			`mcpsts.yaml:7: posture[1].max_age: 48h0m0s is out of range (want 0 for 1h, at most 24h)`,
			`mcpsts.yaml:7: posture[1].preset: "crowdstrike" is not generic`,
			`mcpsts.yaml:7: posture[1].name: "edr" is also the name of posture[0]`,
			`mcpsts.yaml:8: posture[2].bind: only for kind assertion`,
			`mcpsts.yaml:8: posture[2].cache_ttl: 1h0m0s is out of range (want 0 for 1m, at most 10m)`,
			`mcpsts.yaml:8: posture[2].cert_file: cert_file and key_file are required: the broker asks with its own certificate (mTLS), never a static secret`,
			`mcpsts.yaml:8: posture[2].on_error: "maybe" is not deny or absent`,
			`mcpsts.yaml:8: posture[2].timeout: 1m0s is out of range (want 0 for 2s, at most 30s)`,
			`mcpsts.yaml:8: posture[2].url: "http://mdm.example/posture" is not an https URL`,
			`mcpsts.yaml:9: posture[3].kind: "push" is not assertion or pull`,
			`mcpsts.yaml:10: geoip.database: no such file or directory (/no/geo.mmdb)`,
			`mcpsts.yaml:10: geoip.reload_interval: 10ms is out of range (want 1s to 24h, or 0 for 1m)`,
			`mcpsts.yaml:12: server.trusted_proxies[2]: "proxy.example" is not an IP address or a CIDR network`,
		}},
		{"registration", good + "registration: {dynamic: true, max_clients: -1, per_period: 2000000, period: 1s, unused_expiry: 1m}\n", []string{
			`mcpsts.yaml:5: registration.max_clients: -1 is out of range (want 0 for 10000, at most 10000000)`,
			`mcpsts.yaml:5: registration.per_period: 2000000 is out of range (want 0 for 1000, at most 1000000)`,
			`mcpsts.yaml:5: registration.period: 1s is out of range (want 0 for 1h, or 1m to 24h)`,
			`mcpsts.yaml:5: registration.unused_expiry: 1m0s is out of range (want 0 for 24h, or 10m to 2160h)`,
		}},
		{"audiences", good + "audiences: [\"https://sts.example\", \"not a uri\"]\n", []string{
			`mcpsts.yaml:5: audiences[1]: "not a uri" is not an absolute URI without fragment`,
		}},
		{"log", good + "log: {level: loud, format: xml}\n", []string{
			`mcpsts.yaml:5: log.level: "loud" is not one of debug, info, warn, error`,
			`log.format: "xml" is not one of text, json`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := write(t, tt.yaml)
			_, err := Load(file, noEnv, now)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msgs := fieldErrors(t, err)
			if len(msgs) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(msgs), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(msgs[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, msgs[i], w)
				}
				if !strings.HasPrefix(msgs[i], file) {
					t.Errorf("problem %d = %q does not start with the file name", i, msgs[i])
				}
			}
		})
	}
}

func TestLoadCertificateProblems(t *testing.T) {
	cert, key := testFiles(t)
	file := write(t, "issuer: https://sts.example\ntls:\n  cert_file: "+cert+"\n  key_file: "+key+"\n")
	_, err := Load(file, noEnv, now.Add(100*24*time.Hour))
	if err == nil || !strings.Contains(err.Error(), `mcpsts.yaml:3: tls.cert_file: certificate "localhost" expired at`) {
		t.Fatalf("expired certificate: err = %v", err)
	}
	_, err = Load(file, noEnv, now)
	if err != nil {
		t.Fatalf("valid certificate: %v", err)
	}
}

func TestLoadKEKRequired(t *testing.T) {
	cert, key := testFiles(t)
	file := write(t, "issuer: https://sts.example\ntls: {cert_file: "+cert+", key_file: "+key+"}\n")
	_, err := Load(file, func(string) string { return "" }, now)
	if err == nil || !strings.HasSuffix(err.Error(), ": keys.kek_file: required: the key-encryption key that seals signing keys at rest (or set MCPSTS_KEK, or keys.aws_kms.key_id)") {
		t.Fatalf("err = %v", err)
	}
	kek := filepath.Join(t.TempDir(), "kek")
	os.WriteFile(kek, []byte("x"), 0o600)
	file = write(t, "issuer: https://sts.example\ntls: {cert_file: "+cert+", key_file: "+key+"}\nkeys: {kek_file: "+kek+"}\n")
	if _, err := Load(file, func(string) string { return "" }, now); err != nil {
		t.Fatalf("with kek_file: %v", err)
	}
	file = write(t, "issuer: https://sts.example\ntls: {cert_file: "+cert+", key_file: "+key+"}\nkeys: {aws_kms: {key_id: alias/x}}\n")
	if _, err := Load(file, func(string) string { return "" }, now); err != nil {
		t.Fatalf("with aws_kms: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.yaml")
	_, err := Load(p, noEnv, now)
	if err == nil || err.Error() != p+": cannot read configuration: no such file or directory" {
		t.Fatalf("err = %v", err)
	}
}

// fieldErrors returns the messages of the joined FieldErrors in err.
func fieldErrors(t *testing.T, err error) []string {
	t.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]string, len(list))
	for i, e := range list {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("problem %d is a %T, not a *FieldError: %v", i, e, e)
		}
		out[i] = fe.Error()
	}
	return out
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("issuer: https://sts.example\nlisten: 127.0.0.1:8443\ntls: {cert_file: a, key_file: b}\n"))
	f.Add([]byte("server:\n  read_timeout: 5s\n  max_body_bytes: 1024\nlog: {level: info}\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("- 1\n- [2, {3: 4}]\n"))
	f.Add([]byte("issuer: !!binary aGVsbG8=\n"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse("fuzz.yaml", data)
		if err != nil {
			fieldErrors(t, err)
			return
		}
		if cfg == nil {
			t.Fatal("nil config without an error")
		}
		_ = cfg.validate("fuzz.yaml", nil, nil, now)
	})
}

func TestParseProvider(t *testing.T) {
	p, err := ParseProvider("store:ci", []byte(`{"name":"ci","issuer":"https://k8s.example","discovery":true,"preset":"kubernetes"}`))
	if err != nil || p.Name != "ci" || !p.Discovery || p.Preset != "kubernetes" {
		t.Fatalf("%+v, %v", p, err)
	}
	for doc, want := range map[string]string{
		`{"name":"ci","issuer":"http://k8s.example","discovery":true}`:                 `store:ci:1: issuer:`,
		`{"name":"ci","issuer":"https://k8s.example"}`:                                 `discovery: want exactly one key source`,
		`{"name":"ci","issuer":"https://k8s.example","discovery":true,"colour":"red"}`: `colour: unknown field`,
		`{"name":"ci","issuer":"https://k8s.example","discovery":true,"preset":"x"}`:   `preset: "x" is not one of`,
	} {
		if _, err := ParseProvider("store:ci", []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}

func TestParseFederationDocument(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.json")
	os.WriteFile(bundle, []byte(`{}`), 0o600)
	for doc, want := range map[string]string{
		`{"name":"ci","issuer":"https://k8s.example","discovery":true}`:                "oidc ci",
		`{"type":"oidc","name":"ci","issuer":"https://k8s.example","discovery":true}`:  "oidc ci",
		`{"type":"spiffe","name":"prod.example.org","bundle_file":"` + bundle + `"}`:   "spiffe prod.example.org",
		`{"type":"aws","sts_hosts":["127.0.0.1:8443"]}`:                                "aws aws",
		`{"type":"aws","provider":"aws-prod"}`:                                         "aws aws-prod",
		`{"type":"spiffe","name":"prod.example.org"}`:                                  "error want exactly one bundle source",
		`{"type":"spiffe","name":"prod/x","bundle_file":"` + bundle + `"}`:             "error name: \"prod/x\" is not a trust domain name",
		`{"type":"aws","sts_ca_file":"/no/such"}`:                                      "error sts_ca_file: no such file",
		`{"type":"ldap","name":"x"}`:                                                   "error type: \"ldap\" is not oidc, spiffe or aws",
		`{"type":"spiffe","name":"prod.example.org","workload_api":true,"issuer":"x"}`: "error issuer: unknown field",
	} {
		d, err := ParseFederationDocument("provider x", []byte(doc))
		got := d.Type + " " + d.Name()
		if err != nil {
			got = "error " + err.Error()
		}
		if !strings.HasPrefix(want, "error ") && got != want || strings.HasPrefix(want, "error ") && !strings.Contains(got, strings.TrimPrefix(want, "error ")) {
			t.Errorf("%s: got %q, want %q", doc, got, want)
		}
	}
}

// TestNameTaken: the names the file uses, of every kind of provider.
func TestNameTaken(t *testing.T) {
	c := &Config{Providers: []Provider{{Name: "k8s"}}, SPIFFE: SPIFFE{TrustDomains: []TrustDomain{{Name: "prod.example.org"}}}, AWS: AWS{Enabled: true, Provider: "amazon"}}
	for name, want := range map[string]string{"k8s": "providers[0]", "prod.example.org": "spiffe.trust_domains[0]", "amazon": "aws", "aws": "", "other": ""} {
		if got := c.NameTaken(name); got != want {
			t.Errorf("NameTaken(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestSecretFileModes (finding 6 of the security review): a KEK file or a
// TLS private key that group or others can read stops the configuration,
// naming the file and the chmod to run.
func TestSecretFileModes(t *testing.T) {
	cert, key := testFiles(t)
	kek := filepath.Join(t.TempDir(), "kek")
	os.WriteFile(kek, []byte("c2VjcmV0"), 0o600)
	file := write(t, "issuer: https://sts.example\ntls: {cert_file: "+cert+", key_file: "+key+"}\nkeys: {kek_file: "+kek+"}\n")
	if _, err := Load(file, func(string) string { return "" }, now); err != nil {
		t.Fatalf("owner-only files: %v", err)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{kek, 0o644, "keys.kek_file: " + kek + " holds a secret but its mode 0644 lets group or others at it: run chmod 600 " + kek},
		{kek, 0o640, "keys.kek_file: " + kek + " holds a secret but its mode 0640"},
		{key, 0o604, "tls.key_file: " + key + " holds a secret but its mode 0604 lets group or others at it: run chmod 600 " + key},
	} {
		os.Chmod(tc.path, tc.mode)
		_, err := Load(file, func(string) string { return "" }, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mode %o: %v, want %q", tc.mode, err, tc.want)
		}
		os.Chmod(tc.path, 0o600)
	}
}

// FuzzParseFederationDocument: provider documents from the admin API (and
// so from Terraform) never panic the parser, and an accepted one names a
// provider in the safe alphabet.
func FuzzParseFederationDocument(f *testing.F) {
	for _, s := range []string{`{"name":"ci","issuer":"https://a.example","jwks":"{\"keys\":[]}"}`, `{"type":"spiffe","name":"prod.example.org","bundle_file":"/x"}`, `{"type":"aws","provider":"amazon"}`, `{"type":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseFederationDocument("fuzz", b)
		if err == nil && d.OIDC != nil && NameProblem(d.Name()) != "" {
			t.Fatalf("accepted provider name %q", d.Name())
		}
	})
}
