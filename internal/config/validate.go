package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/federation"
	"github.com/mcpsts/mcpsts/internal/redislimits"
	"github.com/mcpsts/mcpsts/internal/strictyaml"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
)

// check is one rule: it returns the reason a field is wrong, or "".
type check struct {
	path string
	rule func(c *Config, now time.Time) string
}

// checks is every rule, in the order of the file.
var checks = []check{
	{"issuer", func(c *Config, _ time.Time) string { return IssuerProblem(c.Issuer) }},
	{"listen", func(c *Config, _ time.Time) string { return ListenProblem(c.Listen) }},
	{"data_dir", func(c *Config, _ time.Time) string {
		if c.DataDir == "" {
			return "required"
		}
		if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
			return c.DataDir + " is not a directory"
		}
		return ""
	}},
	{"store", func(c *Config, _ time.Time) string {
		switch s := c.Store; {
		case s == "", strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
			return ""
		case strings.HasPrefix(s, "sqlite:"):
			if strings.TrimPrefix(strings.TrimPrefix(s, "sqlite:"), "//") == "" {
				return "sqlite: needs a file path (sqlite:PATH)"
			}
			return ""
		default:
			return "want sqlite:PATH or a postgres:// URL"
		}
	}},
	{"tls.cert_file", func(c *Config, _ time.Time) string { return fileProblem(c.TLS.CertFile) }},
	{"tls.key_file", func(c *Config, _ time.Time) string { return secretFileProblem(c.TLS.KeyFile) }},
	{"tls.cert_file", func(c *Config, now time.Time) string {
		if fileProblem(c.TLS.CertFile) != "" || fileProblem(c.TLS.KeyFile) != "" {
			return "" // already reported
		}
		_, _, err := tlsserver.LoadCertificate(c.TLS.CertFile, c.TLS.KeyFile, now, c.TLS.AllowSelfSigned)
		var ce *tlsserver.CertificateError
		if errors.As(err, &ce) {
			return ce.Reason
		}
		return ""
	}},
	{"tls.min_version", func(c *Config, _ time.Time) string {
		if _, err := tlsserver.ParseMinVersion(c.TLS.MinVersion); err != nil {
			return fmt.Sprintf("%q is not allowed (want \"1.2\" or \"1.3\")", c.TLS.MinVersion)
		}
		return ""
	}},
	{"keys.algorithm", func(c *Config, _ time.Time) string {
		if p := oneOf(c.Keys.Algorithm, "ES256", "EdDSA", "RS256"); p != "" {
			return p
		}
		if c.Keys.AWSKMS.KeyID != "" && c.Keys.Algorithm != "ES256" {
			return "AWS KMS keys sign with ES256"
		}
		return ""
	}},
	{"keys.rotation_period", func(c *Config, _ time.Time) string {
		// A key is published an hour and five minutes before it signs and
		// after it retires; a shorter period would overlap those.
		if d := c.Keys.RotationPeriod; d < 3*time.Hour || d > 90*24*time.Hour {
			return fmt.Sprintf("%s is out of range (want 3h to 2160h)", d)
		}
		return ""
	}},
	{"keys.refresh_interval", func(c *Config, _ time.Time) string {
		// Keys are published an hour before they sign: any interval up to
		// minutes sees them in time; shorter ones cost a store read each.
		if d := c.Keys.RefreshInterval; d < time.Second || d > 5*time.Minute {
			return fmt.Sprintf("%s is out of range (want 1s to 5m)", d)
		}
		return ""
	}},
	{"keys.rsa_bits", func(c *Config, _ time.Time) string {
		if b := c.Keys.RSABits; b < 2048 || b > 8192 || b%1024 != 0 {
			return fmt.Sprintf("%d is not allowed (want 2048, 3072 or 4096 …, at most 8192)", b)
		}
		return ""
	}},
	{"keys.kek_file", func(c *Config, _ time.Time) string {
		switch {
		case c.Keys.KEKFile != "":
			return secretFileProblem(c.Keys.KEKFile)
		case c.kekInEnv || c.Keys.AWSKMS.KeyID != "":
			return ""
		}
		return "required: the key-encryption key that seals signing keys at rest (or set " + KEKEnv + ", or keys.aws_kms.key_id)"
	}},
	{"tokens.default_ttl", func(c *Config, _ time.Time) string {
		if p := ttlProblem(c.Tokens.DefaultTTL); p != "" {
			return p
		}
		if c.Tokens.DefaultTTL > c.Tokens.MaxTTL {
			return fmt.Sprintf("%s exceeds tokens.max_ttl (%s)", c.Tokens.DefaultTTL, c.Tokens.MaxTTL)
		}
		return ""
	}},
	{"tokens.max_ttl", func(c *Config, _ time.Time) string { return ttlProblem(c.Tokens.MaxTTL) }},
	{"tokens.revocation_cache_for", durationRule(func(c *Config) time.Duration { return c.Tokens.RevocationCacheFor }, time.Second)},
	{"server.read_header_timeout", durationRule(func(c *Config) time.Duration { return c.Server.ReadHeaderTimeout }, time.Minute)},
	{"server.read_timeout", durationRule(func(c *Config) time.Duration { return c.Server.ReadTimeout }, time.Hour)},
	{"server.write_timeout", durationRule(func(c *Config) time.Duration { return c.Server.WriteTimeout }, time.Hour)},
	{"server.idle_timeout", durationRule(func(c *Config) time.Duration { return c.Server.IdleTimeout }, time.Hour)},
	{"server.shutdown_timeout", durationRule(func(c *Config) time.Duration { return c.Server.ShutdownTimeout }, 10*time.Minute)},
	{"server.max_header_bytes", func(c *Config, _ time.Time) string {
		return rangeProblem(int64(c.Server.MaxHeaderBytes), 1<<10, 1<<20)
	}},
	{"server.max_body_bytes", func(c *Config, _ time.Time) string {
		return rangeProblem(c.Server.MaxBodyBytes, 1<<10, 64<<20)
	}},
	{"log.level", func(c *Config, _ time.Time) string {
		return oneOf(c.Log.Level, "debug", "info", "warn", "error")
	}},
	{"log.format", func(c *Config, _ time.Time) string { return oneOf(c.Log.Format, "text", "json") }},
}

// validate runs every check and joins every problem.
func (c *Config) validate(file string, lines map[string]int, from map[string]string, now time.Time) error {
	var errs []error
	add := func(path, msg string) {
		fe := &FieldError{File: file, Path: path, Env: from[path], Msg: msg}
		if fe.Env == "" {
			fe.Line = strictyaml.LineOf(lines, path)
		}
		errs = append(errs, fe)
	}
	for _, ch := range checks {
		if msg := ch.rule(c, now); msg != "" {
			if from[ch.path] == "" && lines[ch.path] == 0 {
				// a default or a missing field: no line to point at
				errs = append(errs, &FieldError{File: file, Path: ch.path, Msg: msg})
				continue
			}
			add(ch.path, msg)
		}
	}
	for i, path := range c.TrustMaps.Paths {
		if _, err := os.Stat(path); err != nil {
			add(fmt.Sprintf("trust_maps.paths[%d]", i), pathErrorReason(err)+" ("+path+")")
		}
	}
	if d := c.TrustMaps.ReloadInterval; d < time.Second || d > time.Hour {
		add("trust_maps.reload_interval", fmt.Sprintf("%s is out of range (want 1s to 1h)", d))
	}
	if a := c.Admin.Audience; a != "" {
		if u, err := url.Parse(a); err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
			add("admin.audience", fmt.Sprintf("%q is not an absolute https URI", a))
		}
	}
	switch {
	case c.Admin.ClientCAFile != "":
		if msg := fileProblem(c.Admin.ClientCAFile); msg != "" {
			add("admin.client_ca_file", msg)
		}
		if len(c.Admin.ClientNames) == 0 {
			add("admin.client_names", "required with client_ca_file: the certificate names that are administrators")
		}
	case len(c.Admin.ClientNames) > 0:
		add("admin.client_ca_file", "required with client_names")
	}
	for _, lim := range []struct {
		path string
		l    RateLimit
	}{{"limits.per_identity", c.Limits.PerIdentity}, {"limits.per_client", c.Limits.PerClient}, {"limits.per_source", c.Limits.PerSource}} {
		path, l := lim.path, lim.l
		if l.Rate < 0 || l.Rate > 1e6 {
			add(path+".rate", fmt.Sprintf("%g is out of range (0 turns the limit off; at most 1e6)", l.Rate))
		}
		if l.Rate > 0 && (l.Burst < 1 || l.Burst > 1e6) {
			add(path+".burst", fmt.Sprintf("%d is out of range (1 to 1e6)", l.Burst))
		}
	}
	switch l := c.Limits.Store; {
	case c.RedisLimits():
		if err := redislimits.CheckURL(l); err != nil {
			add("limits.store", "the Redis URL "+err.Error())
		}
	case l != "" && l != "memory" && l != "store":
		add("limits.store", fmt.Sprintf("%q is not memory, store or a redis:// URL", l))
	}
	if f := c.Limits.RedisPasswordFile; f != "" {
		if !c.RedisLimits() {
			add("limits.redis_password_file", "set, but limits.store is not a Redis URL")
		} else if p := secretFileProblem(f); p != "" {
			add("limits.redis_password_file", p)
		}
	}
	for i, a := range c.Audiences {
		if p := absoluteURIProblem(a); p != "" {
			add(fmt.Sprintf("audiences[%d]", i), p)
		}
	}
	if f := c.AWS.STSCAFile; f != "" {
		if msg := fileProblem(f); msg != "" {
			add("aws.sts_ca_file", msg)
		}
	}
	tds := map[string]int{}
	for i, td := range c.SPIFFE.TrustDomains {
		path := fmt.Sprintf("spiffe.trust_domains[%d]", i)
		problems := td.problems()
		for _, pr := range problems {
			if pr.field == "name" {
				add(path+".name", pr.msg)
			}
		}
		if j, dup := tds[td.Name]; dup {
			add(path+".name", fmt.Sprintf("%q is also spiffe.trust_domains[%d]", td.Name, j))
		}
		tds[td.Name] = i
		for _, pr := range problems {
			switch pr.field {
			case "name":
			case "":
				add(path, pr.msg)
			default:
				add(path+"."+pr.field, pr.msg)
			}
		}
	}
	names := map[string]int{}
	issuers := map[string]int{}
	for i, p := range c.Providers {
		for _, problem := range p.problems() {
			add(fmt.Sprintf("providers[%d].%s", i, problem.field), problem.msg)
		}
		if j, dup := names[p.Name]; dup && p.Name != "" {
			add(fmt.Sprintf("providers[%d].name", i), fmt.Sprintf("%q is also the name of providers[%d]", p.Name, j))
		} else if j, dup := tds[p.Name]; dup {
			add(fmt.Sprintf("providers[%d].name", i), fmt.Sprintf("%q is also spiffe.trust_domains[%d]: provider names are one namespace", p.Name, j))
		} else if c.AWS.Enabled && p.Name == c.AWS.ProviderName() {
			add(fmt.Sprintf("providers[%d].name", i), fmt.Sprintf("%q is the name of the AWS provider (aws.provider): provider names are one namespace", p.Name))
		}
		if j, dup := issuers[p.Issuer]; dup && p.Issuer != "" {
			add(fmt.Sprintf("providers[%d].issuer", i), fmt.Sprintf("%q is also the issuer of providers[%d]", p.Issuer, j))
		}
		names[p.Name], issuers[p.Issuer] = i, i
		if p.Login != nil && p.Kind == "user" {
			if j, dup := names["\x00login"]; dup {
				add(fmt.Sprintf("providers[%d].login", i), fmt.Sprintf("providers[%d] has the login already: people sign in at one provider", j))
			}
			names["\x00login"] = i
		}
	}
	for _, p := range c.Audit.problems() {
		add("audit."+p.field, p.msg)
	}
	postureNames := map[string]int{}
	for i, ps := range c.Posture {
		for _, problem := range ps.problems() {
			add(fmt.Sprintf("posture[%d].%s", i, problem.field), problem.msg)
		}
		if j, dup := postureNames[ps.Name]; dup && ps.Name != "" {
			add(fmt.Sprintf("posture[%d].name", i), fmt.Sprintf("%q is also the name of posture[%d]", ps.Name, j))
		}
		postureNames[ps.Name] = i
	}
	if f := c.GeoIP.Database; f != "" {
		if msg := fileProblem(f); msg != "" {
			add("geoip.database", msg)
		}
	}
	if d := c.GeoIP.ReloadInterval; d != 0 && (d < time.Second || d > 24*time.Hour) {
		add("geoip.reload_interval", fmt.Sprintf("%s is out of range (want 1s to 24h, or 0 for 1m)", d))
	}
	for i, p := range c.Server.TrustedProxies {
		if _, err := ParseProxy(p); err != nil {
			add(fmt.Sprintf("server.trusted_proxies[%d]", i), err.Error())
		}
	}
	for i, ic := range c.Introspection.Callers {
		path := fmt.Sprintf("introspection.callers[%d]", i)
		if ic.Provider == "" {
			add(path+".provider", "required")
		}
		if ic.Subject == "" {
			add(path+".subject", "required")
		}
		if len(ic.Audiences) == 0 {
			add(path+".audiences", "at least one: the MCP servers whose tokens it may introspect")
		}
		for j, a := range ic.Audiences {
			if p := absoluteURIProblem(a); p != "" {
				add(fmt.Sprintf("%s.audiences[%d]", path, j), p)
			}
		}
	}
	if n := c.Limits.SourcePrefixIPv4; n != 0 && (n < 8 || n > 32) {
		add("limits.source_prefix_ipv4", fmt.Sprintf("%d is out of range (want 8 to 32, or 0 for 32)", n))
	}
	if n := c.Limits.SourcePrefixIPv6; n != 0 && (n < 32 || n > 128) {
		add("limits.source_prefix_ipv6", fmt.Sprintf("%d is out of range (want 32 to 128, or 0 for 64)", n))
	}
	if n := c.Registration.MaxClients; n < 0 || n > 10_000_000 {
		add("registration.max_clients", fmt.Sprintf("%d is out of range (want 0 for 10000, at most 10000000)", n))
	}
	if n := c.Registration.PerPeriod; n < 0 || n > 1_000_000 {
		add("registration.per_period", fmt.Sprintf("%d is out of range (want 0 for 1000, at most 1000000)", n))
	}
	if d := c.Registration.Period; d != 0 && (d < time.Minute || d > 24*time.Hour) {
		add("registration.period", fmt.Sprintf("%s is out of range (want 0 for 1h, or 1m to 24h)", d))
	}
	if d := c.Registration.UnusedExpiry; d != 0 && (d < 10*time.Minute || d > 90*24*time.Hour) {
		add("registration.unused_expiry", fmt.Sprintf("%s is out of range (want 0 for 24h, or 10m to 2160h)", d))
	}
	if d := c.Authorization.RefreshTTL; d < 0 || d > 90*24*time.Hour {
		add("authorization.refresh_ttl", fmt.Sprintf("%s is out of range (want 0 for 24h, at most 2160h)", d))
	}
	if d := c.Authorization.RefreshMaxLifetime; d < 0 || d > 366*24*time.Hour || d != 0 && d < c.Authorization.RefreshTTL {
		add("authorization.refresh_max_lifetime", fmt.Sprintf("%s is out of range (want 0 for 30 days, at least refresh_ttl, at most 8784h)", d))
	}
	for _, scope := range slices.Sorted(maps.Keys(c.Authorization.ScopeDescriptions)) {
		if desc := c.Authorization.ScopeDescriptions[scope]; scope == "" || desc == "" || len(desc) > 200 {
			add("authorization.scope_descriptions."+scope, "a scope name and a description of at most 200 characters")
		}
	}
	for _, lang := range slices.Sorted(maps.Keys(c.Authorization.ScopeDescriptionsByLanguage)) {
		descs := c.Authorization.ScopeDescriptionsByLanguage[lang]
		if !slices.Contains(PageLanguages(), lang) {
			add("authorization.scope_descriptions_by_language."+lang, fmt.Sprintf("%q is not a language of the pages (%s)", lang, strings.Join(PageLanguages(), ", ")))
			continue
		}
		for _, scope := range slices.Sorted(maps.Keys(descs)) {
			if desc := descs[scope]; scope == "" || desc == "" || len(desc) > 200 {
				add("authorization.scope_descriptions_by_language."+lang+"."+scope, "a scope name and a description of at most 200 characters")
			}
		}
	}
	return errors.Join(errs...)
}

// PageLanguages are the languages of the browser pages (English first,
// the default).
func PageLanguages() []string { return []string{"en", "fr"} }

// problems of a provider's login section.
func (l *Login) problems(kind string) []problem {
	var out []problem
	if kind != "user" {
		out = append(out, problem{"login", "only a provider of kind user signs people in"})
	}
	if l.ClientID == "" {
		out = append(out, problem{"login.client_id", "required: mcpsts's client ID at the provider"})
	}
	n := 0
	for _, v := range []string{l.PrivateKeyFile, l.ClientSecretFile, l.ClientSecretEnv} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		out = append(out, problem{"login", "exactly one of private_key_file, client_secret_file and client_secret_env (a secret never goes in this file)"})
	}
	for field, f := range map[string]string{"login.private_key_file": l.PrivateKeyFile, "login.client_secret_file": l.ClientSecretFile} {
		if f != "" {
			if msg := secretFileProblem(f); msg != "" {
				out = append(out, problem{field, msg})
			}
		}
	}
	for field, e := range map[string]string{"login.authorization_endpoint": l.AuthorizationEndpoint, "login.token_endpoint": l.TokenEndpoint} {
		if u, err := url.Parse(e); e != "" && (err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "") {
			out = append(out, problem{field, fmt.Sprintf("%q is not an https URL", e)})
		}
	}
	if (l.AuthorizationEndpoint == "") != (l.TokenEndpoint == "") {
		out = append(out, problem{"login", "authorization_endpoint and token_endpoint go together (neither: the provider's discovery document)"})
	}
	return out
}

type problem struct{ field, msg string }

// problems checks how the audit log rotates and sums up repeated
// refusals: the broker's audit section and the gateway's.
func (a Audit) problems() []problem {
	var out []problem
	if n := a.MaxSize; n != 0 && n < 64<<10 {
		out = append(out, problem{"max_size", fmt.Sprintf("%d bytes is too small (want 0 for no size limit, or at least 64KiB)", n)})
	}
	if d := a.MaxAge; d < 0 || d != 0 && d < time.Minute || d > 366*24*time.Hour {
		out = append(out, problem{"max_age", fmt.Sprintf("%s is out of range (want 0 for no age limit, or 1m to 8784h)", d)})
	}
	if d := a.RepeatInterval; d != 0 && (d < time.Second || d > time.Hour) {
		out = append(out, problem{"repeat_interval", fmt.Sprintf("%s is out of range (want 0 for 1m, or 1s to 1h)", d)})
	}
	if n := a.MaxFiles; n < 0 || n > 1_000_000 {
		out = append(out, problem{"max_files", fmt.Sprintf("%d is out of range (want 0 to keep every rotated file, at most 1000000)", n)})
	}
	return out
}

// RotationProblems are the problems of an audit section that only says
// how the log rotates (the gateway's), each as "field: reason".
func (a Audit) RotationProblems() []string {
	var out []string
	if a.File != "" || len(a.ReplayAttributes) > 0 {
		out = append(out, "file, replay_attributes: not here (the file is audit_log)")
	}
	for _, p := range a.problems() {
		out = append(out, p.field+": "+p.msg)
	}
	return out
}

// The development provider: serve --dev trusts it, with a key of its own
// in the data directory, so that mcpsts token --dev gets a first token
// with no platform at hand. A configuration file or the admin API cannot
// name it.
const (
	DevProvider = "dev"
	DevIssuer   = "https://dev.mcpsts.invalid"
)

// AWSProvider is the provider name of AWS identities (attested through
// STS) unless aws.provider says otherwise; no other provider may take it.
const AWSProvider = "aws"

// ProviderName is the provider name of the identities AWS attests.
func (a *AWS) ProviderName() string {
	if a.Provider == "" {
		return AWSProvider
	}
	return a.Provider
}

// providerName is the alphabet of provider names: lower-case letters,
// digits, '.', '_' and '-', starting and ending with a letter or digit.
// It has no '/', which separates a provider from its subject in a
// workload's sub (workload:PROVIDER/SUBJECT), and it covers every SPIFFE
// trust domain name, as the names of all providers are one namespace.
var providerName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ProviderNames are the provider names this file defines, which trust maps
// may match: its OIDC providers, its trust domains, the AWS provider when
// enabled. (Providers added through the admin API are the store's.)
func (c *Config) ProviderNames() []string {
	var out []string
	for _, p := range c.Providers {
		out = append(out, p.Name)
	}
	for _, td := range c.SPIFFE.TrustDomains {
		out = append(out, td.Name)
	}
	if c.AWS.Enabled {
		out = append(out, c.AWS.ProviderName())
	}
	return out
}

// NameTaken says which part of the file already uses a provider name
// (an OIDC provider, a trust domain, the AWS provider), or returns "".
func (c *Config) NameTaken(name string) string {
	for i, p := range c.Providers {
		if p.Name == name {
			return fmt.Sprintf("providers[%d]", i)
		}
	}
	for i, td := range c.SPIFFE.TrustDomains {
		if td.Name == name {
			return fmt.Sprintf("spiffe.trust_domains[%d]", i)
		}
	}
	if c.AWS.Enabled && c.AWS.ProviderName() == name {
		return "aws"
	}
	return ""
}

// NameProblem says why name cannot name a provider, or returns "".
func NameProblem(name string) string {
	switch {
	case name == "":
		return "required"
	case !providerName.MatchString(name):
		return fmt.Sprintf("%q is not a provider name: lower-case letters, digits, '.', '_' and '-', at most 63, starting and ending with a letter or digit", name)
	}
	return ""
}

// problems checks AWS settings given as a provider document.
func (a *AWS) problems() []problem {
	var out []problem
	if a.Provider != "" {
		if msg := NameProblem(a.Provider); msg != "" {
			out = append(out, problem{"provider", msg})
		}
	}
	if a.STSCAFile != "" {
		if msg := fileProblem(a.STSCAFile); msg != "" {
			out = append(out, problem{"sts_ca_file", msg})
		}
	}
	for i, h := range a.STSHosts {
		if h == "" || strings.Contains(h, "/") {
			out = append(out, problem{fmt.Sprintf("sts_hosts[%d]", i), fmt.Sprintf("%q is not a host[:port]", h)})
		}
	}
	return out
}

// problems checks one trust domain; field "" is the trust domain itself.
func (td *TrustDomain) problems() []problem {
	var out []problem
	if _, err := spiffeid.TrustDomainFromString(td.Name); err != nil || td.Name == "" || strings.Contains(td.Name, "/") {
		out = append(out, problem{"name", fmt.Sprintf("%q is not a trust domain name", td.Name)})
	} else if td.Name == AWSProvider {
		out = append(out, problem{"name", fmt.Sprintf("%q is the name of the AWS provider: provider names are one namespace", td.Name)})
	}
	sources := 0
	for _, set := range []bool{td.BundleFile != "", td.WorkloadAPI, td.BundleEndpoint != nil} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		out = append(out, problem{"", fmt.Sprintf("want exactly one bundle source of bundle_file, workload_api and bundle_endpoint; got %d", sources)})
	}
	if td.BundleFile != "" {
		if msg := fileProblem(td.BundleFile); msg != "" {
			out = append(out, problem{"bundle_file", msg})
		}
	}
	if ep := td.BundleEndpoint; ep != nil {
		if !strings.HasPrefix(ep.URL, "https://") {
			out = append(out, problem{"bundle_endpoint.url", fmt.Sprintf("%q is not an https URL", ep.URL)})
		}
		switch ep.Profile {
		case "https_web":
			if ep.CAFile != "" {
				if msg := fileProblem(ep.CAFile); msg != "" {
					out = append(out, problem{"bundle_endpoint.ca_file", msg})
				}
			}
		case "https_spiffe":
			if id, err := spiffeid.FromString(ep.EndpointSPIFFEID); err != nil || id.TrustDomain().Name() != td.Name {
				out = append(out, problem{"bundle_endpoint.endpoint_spiffe_id", fmt.Sprintf("%q is not a SPIFFE ID of %s", ep.EndpointSPIFFEID, td.Name)})
			}
			if msg := fileProblem(ep.InitialBundleFile); msg != "" {
				out = append(out, problem{"bundle_endpoint.initial_bundle_file", msg})
			}
		default:
			out = append(out, problem{"bundle_endpoint.profile", fmt.Sprintf("%q is not https_web or https_spiffe", ep.Profile)})
		}
	}
	return out
}

// problems checks one provider; the provider's own constructors check the
// same again when the server builds it.
func (p *Provider) problems() []problem {
	var out []problem
	if msg := NameProblem(p.Name); msg != "" {
		out = append(out, problem{"name", msg})
	} else if p.Name == DevProvider {
		out = append(out, problem{"name", fmt.Sprintf("%q is the development provider of serve --dev, trusted only there", p.Name)})
	} else if p.Name == AWSProvider {
		out = append(out, problem{"name", fmt.Sprintf("%q is the name of the AWS provider (identities attested through STS): provider names are one namespace", p.Name)})
	}
	if msg := IssuerProblem(p.Issuer); msg != "" {
		out = append(out, problem{"issuer", msg})
	} else if p.Issuer == DevIssuer {
		out = append(out, problem{"issuer", fmt.Sprintf("%q is the development provider of serve --dev, trusted only there", p.Issuer)})
	}
	sources := 0
	for _, set := range []bool{p.Discovery, p.JWKSURI != "", p.JWKS != "", p.JWKSFile != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		out = append(out, problem{"discovery", fmt.Sprintf("want exactly one key source of discovery: true, jwks_uri, jwks and jwks_file; got %d", sources)})
	}
	if p.JWKSURI != "" {
		if u, err := url.Parse(p.JWKSURI); err != nil || u.Scheme != "https" || u.Host == "" {
			out = append(out, problem{"jwks_uri", fmt.Sprintf("%q is not an https URL", p.JWKSURI)})
		}
	}
	for field, f := range map[string]string{"jwks_file": p.JWKSFile, "ca_file": p.CAFile} {
		if f != "" {
			if msg := fileProblem(f); msg != "" {
				out = append(out, problem{field, msg})
			}
		}
	}
	for i, a := range p.Algorithms {
		if !slices.Contains(federation.SupportedAlgorithms(), a) {
			out = append(out, problem{fmt.Sprintf("algorithms[%d]", i), fmt.Sprintf("%q is not allowed (want some of %s)", a, strings.Join(federation.SupportedAlgorithms(), ", "))})
		}
	}
	for i, a := range p.Audiences {
		if a == "" {
			out = append(out, problem{fmt.Sprintf("audiences[%d]", i), "empty"})
		}
	}
	if p.Kind != "" && p.Kind != "workload" && p.Kind != "user" {
		out = append(out, problem{"kind", fmt.Sprintf("%q is not workload or user", p.Kind)})
	}
	if p.IDJAG && p.Kind != "user" {
		out = append(out, problem{"id_jag", "ID-JAGs name a user: only a provider of kind user issues them"})
	}
	switch d := p.IDJAGMaxLifetime; {
	case d != 0 && !p.IDJAG:
		out = append(out, problem{"id_jag_max_lifetime", "goes with id_jag: true"})
	case d < 0 || d > time.Hour:
		out = append(out, problem{"id_jag_max_lifetime", fmt.Sprintf("%s is out of range (want 0 for 5m, at most 1h)", d)})
	}
	if p.Preset != "" && !slices.Contains(oidc.Presets(), oidc.Preset(p.Preset)) {
		out = append(out, problem{"preset", fmt.Sprintf("%q is not one of %s", p.Preset, presetNames())})
	}
	for field, d := range map[string]struct{ v, max time.Duration }{
		"leeway":                       {p.Leeway, 5 * time.Minute},
		"max_token_age":                {p.MaxTokenAge, 366 * 24 * time.Hour},
		"refresh.min":                  {p.Refresh.Min, 24 * time.Hour},
		"refresh.max":                  {p.Refresh.Max, 7 * 24 * time.Hour},
		"refresh.unknown_kid_interval": {p.Refresh.UnknownKidInterval, time.Hour},
		"refresh.stale_bound":          {p.Refresh.StaleBound, 7 * 24 * time.Hour},
	} {
		if d.v < 0 || d.v > d.max {
			out = append(out, problem{field, fmt.Sprintf("%s is out of range (want 0 for the default, at most %s)", d.v, d.max)})
		}
	}
	if l := p.Login; l != nil {
		out = append(out, l.problems(p.Kind)...)
	}
	if p.Refresh.Min > 0 && p.Refresh.Max > 0 && p.Refresh.Min > p.Refresh.Max {
		out = append(out, problem{"refresh.min", fmt.Sprintf("%s exceeds refresh.max (%s)", p.Refresh.Min, p.Refresh.Max)})
	}
	slices.SortFunc(out, func(a, b problem) int { return strings.Compare(a.field, b.field) })
	return out
}

// problems of a posture source.
func (p *PostureSource) problems() []problem {
	var out []problem
	if msg := NameProblem(p.Name); msg != "" {
		out = append(out, problem{"name", msg})
	}
	switch p.OnError {
	case "", "deny", "absent":
	case "allow":
		out = append(out, problem{"on_error", `"allow" is not offered: a source that fails must not grant; want deny or absent`})
	default:
		out = append(out, problem{"on_error", fmt.Sprintf("%q is not deny or absent", p.OnError)})
	}
	assertionOnly := map[string]bool{"issuer": p.Issuer != "", "discovery": p.Discovery, "jwks_uri": p.JWKSURI != "", "jwks": p.JWKS != "",
		"jwks_file": p.JWKSFile != "", "algorithms": len(p.Algorithms) > 0, "audience": p.Audience != "", "max_age": p.MaxAge != 0,
		"preset": p.Preset != "", "bind": !p.Bind.isZero()}
	pullOnly := map[string]bool{"url": p.URL != "", "cert_file": p.CertFile != "", "key_file": p.KeyFile != "", "timeout": p.Timeout != 0,
		"max_bytes": p.MaxBytes != 0, "cache_ttl": p.CacheTTL != 0, "cache_entries": p.CacheEntries != 0}
	misplaced := func(fields map[string]bool, kind string) {
		for _, f := range slices.Sorted(maps.Keys(fields)) {
			if fields[f] {
				out = append(out, problem{f, "only for kind " + kind})
			}
		}
	}
	switch p.Kind {
	case "assertion":
		misplaced(pullOnly, "pull")
		keys := p.AssertionKeys()
		for _, pr := range keys.problems() {
			if pr.field != "name" {
				out = append(out, pr)
			}
		}
		switch id := p.Bind.Identity; {
		case id == "":
			out = append(out, problem{"bind.identity", "required: subject or attributes.<name>, what of the verified identity the assertion must name (so that one host's report cannot serve another)"})
		case id != "subject" && (!strings.HasPrefix(id, "attributes.") || len(id) == len("attributes.")):
			out = append(out, problem{"bind.identity", fmt.Sprintf("%q is not subject or attributes.<name>", id)})
		}
		if len(p.Bind.Providers) == 0 {
			out = append(out, problem{"bind.providers", "required: the providers whose identities these assertions describe (an equal subject from another provider is another workload)"})
		}
		for i, name := range p.Bind.Providers {
			if name == "" || slices.Index(p.Bind.Providers, name) != i {
				out = append(out, problem{fmt.Sprintf("bind.providers[%d]", i), fmt.Sprintf("%q is empty or named twice", name)})
			}
		}
		if p.Preset != "" && p.Preset != "generic" {
			out = append(out, problem{"preset", fmt.Sprintf("%q is not generic (the one preset for posture assertions)", p.Preset)})
		}
		if p.MaxAge < 0 || p.MaxAge > 24*time.Hour {
			out = append(out, problem{"max_age", fmt.Sprintf("%s is out of range (want 0 for 1h, at most 24h)", p.MaxAge)})
		}
	case "pull":
		misplaced(assertionOnly, "assertion")
		if u, err := url.Parse(p.URL); err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" || u.User != nil {
			out = append(out, problem{"url", fmt.Sprintf("%q is not an https URL", p.URL)})
		}
		if p.CertFile == "" || p.KeyFile == "" {
			out = append(out, problem{"cert_file", "cert_file and key_file are required: the broker asks with its own certificate (mTLS), never a static secret"})
		}
		for field, f := range map[string]string{"cert_file": p.CertFile, "key_file": p.KeyFile, "ca_file": p.CAFile} {
			if f != "" {
				if msg := fileProblem(f); msg != "" {
					out = append(out, problem{field, msg})
				}
			}
		}
		if p.Timeout < 0 || p.Timeout > 30*time.Second {
			out = append(out, problem{"timeout", fmt.Sprintf("%s is out of range (want 0 for 2s, at most 30s)", p.Timeout)})
		}
		if p.MaxBytes < 0 || p.MaxBytes > 1<<20 {
			out = append(out, problem{"max_bytes", fmt.Sprintf("%d is out of range (want 0 for 64 KiB, at most 1 MiB)", p.MaxBytes)})
		}
		if p.CacheTTL < 0 || p.CacheTTL > 10*time.Minute {
			out = append(out, problem{"cache_ttl", fmt.Sprintf("%s is out of range (want 0 for 1m, at most 10m)", p.CacheTTL)})
		}
		if p.CacheEntries < 0 || p.CacheEntries > 1_000_000 {
			out = append(out, problem{"cache_entries", fmt.Sprintf("%d is out of range (want 0 for 10000, at most 1000000)", p.CacheEntries)})
		}
	default:
		out = append(out, problem{"kind", fmt.Sprintf("%q is not assertion or pull", p.Kind)})
	}
	slices.SortFunc(out, func(a, b problem) int { return strings.Compare(a.field, b.field) })
	return out
}

// ParseProxy reads a trusted proxy: an address or a network.
func ParseProxy(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or a CIDR network", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func absoluteURIProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		return fmt.Sprintf("%q is not an absolute URI without fragment", s)
	}
	return ""
}

// IssuerProblem says why s is not a valid issuer identifier (RFC 8414 §2:
// https, no query, no fragment), or "".
func IssuerProblem(s string) string {
	if s == "" {
		return "required: the https URL clients know this server by"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL", s)
	case u.Scheme != "https":
		return fmt.Sprintf("%q must use https", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host", s)
	case u.User != nil:
		return fmt.Sprintf("%q may not hold user information", s)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Sprintf("%q may not have a query", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Sprintf("%q may not have a fragment", s)
	}
	return ""
}

// ListenProblem says why s is not a host:port to listen on, or "".
func ListenProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 0 to 65535", port)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Sprintf("host %q must be an IP address or localhost", host)
	}
	return ""
}

func fileProblem(path string) string {
	if path == "" {
		return "required"
	}
	f, err := os.Open(path)
	if err != nil {
		return pathErrorReason(err) + " (" + path + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return path + " is a directory"
	}
	return ""
}

// secretFileProblem is fileProblem for a file holding a secret (a private
// key, the KEK), which must not be readable or writable by group or others,
// as ssh requires of its keys.
func secretFileProblem(path string) string {
	if p := fileProblem(path); p != "" {
		return p
	}
	fi, err := os.Stat(path)
	if err != nil {
		return pathErrorReason(err) + " (" + path + ")"
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("%s holds a secret but its mode %04o lets group or others at it: run chmod 600 %s", path, perm, path)
	}
	return ""
}

func durationRule(get func(*Config) time.Duration, max time.Duration) func(*Config, time.Time) string {
	return func(c *Config, _ time.Time) string {
		if d := get(c); d <= 0 || d > max {
			return fmt.Sprintf("%s is out of range (want more than 0, at most %s)", d, max)
		}
		return ""
	}
}

func ttlProblem(d time.Duration) string {
	if d < time.Minute || d > time.Hour {
		return fmt.Sprintf("%s is out of range (want 1m to 1h)", d)
	}
	return ""
}

func rangeProblem(n, min, max int64) string {
	if n < min || n > max {
		return fmt.Sprintf("%d is out of range (want %d to %d)", n, min, max)
	}
	return ""
}

func oneOf(s string, allowed ...string) string {
	for _, a := range allowed {
		if s == a {
			return ""
		}
	}
	return fmt.Sprintf("%q is not one of %s", s, strings.Join(allowed, ", "))
}

func presetNames() string {
	names := make([]string, 0, len(oidc.Presets()))
	for _, p := range oidc.Presets() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}
