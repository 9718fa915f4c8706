// Package config reads the mcpsts server configuration: one YAML file,
// parsed strictly (unknown and repeated keys are errors), overridden by a
// documented set of environment variables, and validated in full so that
// every problem is reported at once with its field path.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mcpsts/mcpsts/internal/auditlog"
	"github.com/mcpsts/mcpsts/internal/tlsserver"
	"go.yaml.in/yaml/v3"
)

// Config is the server configuration. The YAML keys are the field tags.
type Config struct {
	// Issuer is the authorization server's issuer identifier: an https URL
	// without query or fragment, identical to what clients are told.
	Issuer string `yaml:"issuer"`
	// Listen is the HTTPS listen address, host:port.
	Listen string `yaml:"listen"`
	// DataDir holds the default SQLite database and local state.
	DataDir string `yaml:"data_dir"`
	// Store is "sqlite:PATH" or a postgres:// URL. Empty means
	// sqlite:<data_dir>/mcpsts.db.
	Store  string `yaml:"store"`
	TLS    TLS    `yaml:"tls"`
	Keys   Keys   `yaml:"keys"`
	Tokens Tokens `yaml:"tokens"`
	// Audiences are the aud values by which workloads address tokens to
	// this broker; empty means the issuer URL and the token endpoint URL.
	Audiences []string `yaml:"audiences"`
	// Providers are the external issuers whose tokens are trusted.
	Providers []Provider `yaml:"providers"`
	// Posture sources fill context.<name> for trust-map conditions.
	Posture []PostureSource `yaml:"posture"`
	// GeoIP gives conditions the place of a request's source address.
	GeoIP GeoIP `yaml:"geoip"`
	// TrustMaps are the policy files.
	TrustMaps TrustMaps `yaml:"trust_maps"`
	SPIFFE    SPIFFE    `yaml:"spiffe"`
	AWS       AWS       `yaml:"aws"`
	Admin     Admin     `yaml:"admin"`
	Limits    Limits    `yaml:"limits"`
	Server    Server    `yaml:"server"`
	Log       Log       `yaml:"log"`
	Audit     Audit     `yaml:"audit"`
	// Authorization and Registration configure the browser flows.
	Authorization Authorization `yaml:"authorization"`
	Registration  Registration  `yaml:"registration"`
	DPoP          DPoP          `yaml:"dpop"`
	Introspection Introspection `yaml:"introspection"`

	// kekInEnv records that MCPSTS_KEK holds the key-encryption key.
	kekInEnv bool
}

// Keys configures the token signing keys.
type Keys struct {
	// Algorithm of new local keys: ES256, EdDSA or RS256.
	Algorithm string `yaml:"algorithm"`
	// RotationPeriod is how long a local key is the newest before its
	// successor is made.
	RotationPeriod time.Duration `yaml:"rotation_period"`
	// RefreshInterval is how often a replica reloads the key set from the
	// store: the bound within which it sees a key another one made.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// RSABits is the size of new RS256 keys.
	RSABits int `yaml:"rsa_bits"`
	// KEKFile holds the base64 key-encryption key that seals local private
	// keys at rest; MCPSTS_KEK may hold it instead.
	KEKFile string `yaml:"kek_file"`
	AWSKMS  AWSKMS `yaml:"aws_kms"`
}

// AWSKMS selects a KMS key to sign with instead of local keys.
type AWSKMS struct {
	KeyID  string `yaml:"key_id"` // key ID, ARN or alias ARN
	Region string `yaml:"region"` // default: the SDK's (AWS_REGION…)
}

// Provider is one trusted issuer of workload tokens.
type Provider struct {
	Name   string `yaml:"name"`
	Issuer string `yaml:"issuer"`
	// Kind is workload (the default) or user: a user provider's tokens get
	// tokens only through a workload acting for the user, with consent.
	Kind string `yaml:"kind"`
	// Exactly one key source.
	Discovery bool   `yaml:"discovery"`
	JWKSURI   string `yaml:"jwks_uri"`
	JWKS      string `yaml:"jwks"`      // the key set itself, inline
	JWKSFile  string `yaml:"jwks_file"` // the key set in a file
	// CAFile, when set, is the only CA trusted for the issuer's HTTPS
	// (a cluster's own API server, say).
	CAFile         string        `yaml:"ca_file"`
	Algorithms     []string      `yaml:"algorithms"`
	Audiences      []string      `yaml:"audiences"`
	Preset         string        `yaml:"preset"`
	Leeway         time.Duration `yaml:"leeway"`
	MaxTokenAge    time.Duration `yaml:"max_token_age"`
	RequiredClaims []string      `yaml:"required_claims"`
	Typ            string        `yaml:"typ"`
	SingleUse      bool          `yaml:"single_use"`
	// IDJAG, on a user provider, accepts its Identity Assertion JWT
	// Authorization Grants (typ oauth-id-jag+jwt, SEP-990) at the JWT
	// bearer grant, each once.
	IDJAG bool `yaml:"id_jag"`
	// IDJAGMaxLifetime bounds its ID-JAGs' exp - iat (default 5m, at most
	// 1h): ID-JAGs are used at once.
	IDJAGMaxLifetime time.Duration `yaml:"id_jag_max_lifetime"`
	Refresh          Refresh       `yaml:"refresh"`
	// Login, on a user provider, signs people in at it for the browser
	// flows, with mcpsts as its OpenID Connect relying party.
	Login *Login `yaml:"login"`
}

// Login is mcpsts's registration at a user provider. The client
// authenticates by private_key_jwt (PrivateKeyFile) or a client secret
// read from a file or an environment variable: never from the YAML.
type Login struct {
	ClientID         string `yaml:"client_id"`
	PrivateKeyFile   string `yaml:"private_key_file"`
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecretEnv  string `yaml:"client_secret_env"`
	// The provider's endpoints; default: its discovery document.
	AuthorizationEndpoint string `yaml:"authorization_endpoint"`
	TokenEndpoint         string `yaml:"token_endpoint"`
	// Scopes asked of the provider (default: openid, profile, email).
	Scopes []string `yaml:"scopes"`
}

// Authorization configures the browser flows (authorization code with
// PKCE), which run when a user provider has a login section, or in dev.
type Authorization struct {
	// RefreshTTL bounds a refresh token's life (default 24h, at most 90
	// days); each use rotates it.
	RefreshTTL time.Duration `yaml:"refresh_ttl"`
	// RefreshMaxLifetime is a refresh family's absolute life from its
	// code's redemption, which rotations never extend (default 30 days,
	// at most 366 days; the consent, checked at every refresh, ends it
	// sooner when it ends sooner).
	RefreshMaxLifetime time.Duration `yaml:"refresh_max_lifetime"`
	// ClientMetadataDocuments accepts clients whose ID is the https URL of
	// their metadata document (default true).
	ClientMetadataDocuments *bool `yaml:"client_metadata_documents"`
	// ScopeDescriptions tell people on the consent screen what a scope
	// allows.
	ScopeDescriptions map[string]string `yaml:"scope_descriptions"`
	// ScopeDescriptionsByLanguage are the same in the pages' other
	// languages, by language (fr): a scope without one here is described
	// by scope_descriptions.
	ScopeDescriptionsByLanguage map[string]map[string]string `yaml:"scope_descriptions_by_language"`
}

// DPoP configures proof-of-possession at the token endpoint (RFC 9449):
// a request with a proof gets a token bound to its key.
type DPoP struct {
	// RequireNonce makes every proof carry a server nonce (use_dpop_nonce,
	// RFC 9449 §8), valid on every replica sharing the store.
	RequireNonce bool `yaml:"require_nonce"`
}

// Introspection says who may introspect tokens (RFC 7662): MCP servers,
// by their own workload identity, for their own audiences. Administrators
// (an admin token) may introspect any token.
type Introspection struct {
	Callers []IntrospectionCaller `yaml:"callers"`
}

// IntrospectionCaller is one MCP server's identity and audiences.
type IntrospectionCaller struct {
	Provider  string   `yaml:"provider"`
	Subject   string   `yaml:"subject"`
	Audiences []string `yaml:"audiences"`
}

// Registration configures client registration.
type Registration struct {
	// Dynamic turns on Dynamic Client Registration (RFC 7591) for public
	// clients; off by default.
	Dynamic bool `yaml:"dynamic"`
	// MaxClients bounds the dynamically registered clients kept at once
	// (default 10000); beyond it registrations are refused until unused
	// ones expire.
	MaxClients int `yaml:"max_clients"`
	// PerPeriod registrations from all sources together are taken every
	// Period on each replica (default 1000 an hour), besides the
	// per-source limit.
	PerPeriod int           `yaml:"per_period"`
	Period    time.Duration `yaml:"period"`
	// UnusedExpiry removes a dynamic registration that got no token
	// within it (default 24h).
	UnusedExpiry time.Duration `yaml:"unused_expiry"`
}

// TrustMaps says where the trust maps are and how often to look for
// changes.
type TrustMaps struct {
	// Paths are files or directories of *.yaml, *.yml and *.json maps.
	Paths          []string      `yaml:"paths"`
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Admin configures who may use the admin API: holders of a broker token
// for Audience with the admin scope, and, with ClientCAFile, clients whose
// certificate chains to it and names one of ClientNames.
type Admin struct {
	Audience     string   `yaml:"audience"` // default: <issuer>/admin
	ClientCAFile string   `yaml:"client_ca_file"`
	ClientNames  []string `yaml:"client_names"` // URI SAN (a SPIFFE ID) or common name
}

// AWS enables AWS IAM attestation (GetCallerIdentity evidence).
type AWS struct {
	Enabled bool `yaml:"enabled"`
	// Provider is the identities' provider name in trust maps (default aws).
	Provider string `yaml:"provider"`
	// STSHosts replaces the allow-list of STS endpoints (default: the
	// global and regional sts.*.amazonaws.com[.cn]).
	STSHosts []string `yaml:"sts_hosts"`
	// SingleUse claims each signed request once (default true).
	SingleUse *bool `yaml:"single_use"`
	// STSCAFile, when set, is the only CA trusted for the STS endpoints
	// (a proxy, tests); default: the system roots.
	STSCAFile string `yaml:"sts_ca_file"`
}

// SPIFFE lists the trusted SPIFFE trust domains.
type SPIFFE struct {
	TrustDomains []TrustDomain `yaml:"trust_domains"`
	// WorkloadAPISocket is the agent's socket, unix:///…; empty means
	// SPIFFE_ENDPOINT_SOCKET.
	WorkloadAPISocket string `yaml:"workload_api_socket"`
}

// TrustDomain is one trusted trust domain and the one source of its bundle.
type TrustDomain struct {
	Name           string          `yaml:"name"`
	BundleFile     string          `yaml:"bundle_file"`
	WorkloadAPI    bool            `yaml:"workload_api"`
	BundleEndpoint *BundleEndpoint `yaml:"bundle_endpoint"`
}

// BundleEndpoint is a SPIFFE federation bundle endpoint.
type BundleEndpoint struct {
	URL     string `yaml:"url"`
	Profile string `yaml:"profile"` // https_web or https_spiffe
	// EndpointSPIFFEID authenticates an https_spiffe endpoint, against the
	// bundle in InitialBundleFile.
	EndpointSPIFFEID  string `yaml:"endpoint_spiffe_id"`
	InitialBundleFile string `yaml:"initial_bundle_file"`
	// CAFile trusts a private CA for an https_web endpoint (default: the
	// system roots).
	CAFile string `yaml:"ca_file"`
}

// Limits are the token endpoint's rate limits.
type Limits struct {
	PerIdentity RateLimit `yaml:"per_identity"`
	PerClient   RateLimit `yaml:"per_client"`
	// PerSource limits one source address, before a request is read,
	// within its prefix: SourcePrefixIPv4 (default 32) and
	// SourcePrefixIPv6 (default 64: a host picks any address of its /64).
	PerSource        RateLimit `yaml:"per_source"`
	SourcePrefixIPv4 int       `yaml:"source_prefix_ipv4"`
	SourcePrefixIPv6 int       `yaml:"source_prefix_ipv6"`
	// Store says where the per-identity and per-client buckets live:
	// "store" (shared by the replicas on the store), a redis:// or
	// rediss:// URL (shared in Redis), "memory" (each process its own), or
	// "" (the store when it is PostgreSQL, memory with the embedded SQLite
	// store: one process).
	Store string `yaml:"store"`
	// RedisPasswordFile holds the password of the Redis in Store, if it
	// wants one (never in the URL).
	RedisPasswordFile string `yaml:"redis_password_file"`
}

// RedisLimits reports whether the per-identity and per-client limits are
// kept in Redis (limits.store is a Redis URL).
func (c *Config) RedisLimits() bool {
	return strings.HasPrefix(c.Limits.Store, "redis://") || strings.HasPrefix(c.Limits.Store, "rediss://")
}

// SharedLimits reports whether the per-identity and per-client limits are
// kept in the store.
func (c *Config) SharedLimits() bool {
	switch c.Limits.Store {
	case "":
		return strings.HasPrefix(c.StoreURL(), "postgres")
	case "store":
		return true
	}
	return false // memory, or Redis
}

// RateLimit is a token bucket: Rate requests per second, Burst at once;
// rate 0 turns it off.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Refresh bounds a provider's key-set cache.
type Refresh struct {
	Min                time.Duration `yaml:"min"`
	Max                time.Duration `yaml:"max"`
	UnknownKidInterval time.Duration `yaml:"unknown_kid_interval"`
	StaleBound         time.Duration `yaml:"stale_bound"`
}

// Tokens bounds access token lifetimes.
type Tokens struct {
	DefaultTTL time.Duration `yaml:"default_ttl"`
	MaxTTL     time.Duration `yaml:"max_ttl"`
	// RevocationCacheFor bounds how late a revocation made at another
	// replica is seen by this one's admin API, introspection and
	// delegation (0: 500ms; at most 1s).
	RevocationCacheFor time.Duration `yaml:"revocation_cache_for"`
}

// KEKEnv is the environment variable that may hold the key-encryption key.
const KEKEnv = "MCPSTS_KEK"

// TLS configures the server certificate.
type TLS struct {
	CertFile        string `yaml:"cert_file"`
	KeyFile         string `yaml:"key_file"`
	MinVersion      string `yaml:"min_version"`
	AllowSelfSigned bool   `yaml:"allow_self_signed"`
}

// Server bounds what clients can make the server hold.
type Server struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	// TrustedProxies are the addresses or networks of the proxies in front
	// of the server: only from them is X-Forwarded-For believed, for the
	// source address that limits, conditions and the audit log see.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// PostureSource is a source of security posture: signed assertions the
// agents push (kind assertion) or attributes the broker pulls for each
// identity (kind pull).
type PostureSource struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // assertion or pull
	// OnError is deny (the default: a source that fails makes every map
	// that reads it false) or absent (as if it had said nothing).
	OnError string `yaml:"on_error"`

	// kind assertion: the issuer, its keys as for providers, and the rules.
	Issuer     string   `yaml:"issuer"`
	Discovery  bool     `yaml:"discovery"`
	JWKSURI    string   `yaml:"jwks_uri"`
	JWKS       string   `yaml:"jwks"`
	JWKSFile   string   `yaml:"jwks_file"`
	Algorithms []string `yaml:"algorithms"`
	Refresh    Refresh  `yaml:"refresh"`
	// Audience, when set, is the aud every assertion must carry.
	Audience string        `yaml:"audience"`
	MaxAge   time.Duration `yaml:"max_age"` // default 1h
	Preset   string        `yaml:"preset"`  // generic
	Bind     PostureBind   `yaml:"bind"`

	// kind pull: the endpoint, asked with the broker's own certificate.
	URL          string        `yaml:"url"`
	CertFile     string        `yaml:"cert_file"`
	KeyFile      string        `yaml:"key_file"`
	Timeout      time.Duration `yaml:"timeout"`   // default 2s
	MaxBytes     int64         `yaml:"max_bytes"` // default 64 KiB
	CacheTTL     time.Duration `yaml:"cache_ttl"` // default 1m, at most 10m
	CacheEntries int           `yaml:"cache_entries"`

	// CAFile is the CA to trust for the issuer's or the endpoint's TLS.
	CAFile string `yaml:"ca_file"`
}

// PostureBind ties an assertion to the identity it is about: its Claim
// (default sub) must equal the identity's subject or one of its
// attributes (Identity: subject or attributes.<path>), and the identity
// must come from one of Providers (one cluster's service account is not
// another's with the same name).
type PostureBind struct {
	Claim     string   `yaml:"claim"`
	Identity  string   `yaml:"identity"`
	Providers []string `yaml:"providers"`
}

func (b PostureBind) isZero() bool {
	return b.Claim == "" && b.Identity == "" && len(b.Providers) == 0
}

// GeoIP configures geolocation.
type GeoIP struct {
	// Database is a MaxMind-format database file (GeoIP2 or GeoLite2
	// Country, City or ASN), reloaded when it changes.
	Database       string        `yaml:"database"`
	ReloadInterval time.Duration `yaml:"reload_interval"` // default 1m
}

// AssertionKeys is the key source of an assertion source, as a provider's.
func (p *PostureSource) AssertionKeys() Provider {
	return Provider{Name: "posture:" + p.Name, Issuer: p.Issuer, Discovery: p.Discovery, JWKSURI: p.JWKSURI,
		JWKS: p.JWKS, JWKSFile: p.JWKSFile, CAFile: p.CAFile, Algorithms: p.Algorithms, Refresh: p.Refresh}
}

// Log configures the server log on standard error.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Audit configures the hash-chained audit log written beside the traces.
type Audit struct {
	// File is the log's path; empty means <data_dir>/audit.log, "off"
	// writes none (the traces remain the audit trail).
	File string `yaml:"file"`
	// ReplayAttributes names the identity attributes each decision's line
	// records so that `mcpsts trustmap impact` can replay it against other
	// maps; none given: those the loaded maps read.
	ReplayAttributes []string `yaml:"replay_attributes"`
	// Rotation: the file is rotated before it passes MaxSize and once its
	// first line is MaxAge old (0: never); MaxFiles rotated files are kept
	// (0: all); Compress gzips them. The chain continues across files.
	MaxSize  ByteSize      `yaml:"max_size"`
	MaxAge   time.Duration `yaml:"max_age"`
	MaxFiles int           `yaml:"max_files"`
	Compress bool          `yaml:"compress"`
	// RepeatInterval: of the refusals no verified identity stands behind,
	// the first of each kind (event, source, error) in an interval is
	// written, the others counted in one audit.repeated line (default 1m).
	RepeatInterval time.Duration `yaml:"repeat_interval"`
}

// ByteSize is a number of bytes, written as a whole number or with a
// unit: 512KiB, 100MiB, 2GiB (KB, MB and GB are powers of ten).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// UnmarshalYAML reads a ByteSize.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.n
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size", n.Value)
	}
	*b = ByteSize(v * mult)
	return nil
}

// Describe names the form in error messages.
func (ByteSize) Describe() string { return "a size such as 100MiB or 1048576" }

// AuditFile is the audit log to write, "" for none.
func (c *Config) AuditFile() string {
	switch c.Audit.File {
	case "off":
		return ""
	case "":
		return filepath.Join(c.DataDir, "audit.log")
	}
	return c.Audit.File
}

// AuditOptions are the audit log's rotation settings.
func (c *Config) AuditOptions(clock func() time.Time, log *slog.Logger) auditlog.Options {
	return c.Audit.Options(clock, log)
}

// Options are the audit log's rotation settings for auditlog.
func (a Audit) Options(clock func() time.Time, log *slog.Logger) auditlog.Options {
	return auditlog.Options{Clock: clock, Log: log, MaxSize: int64(a.MaxSize), MaxAge: a.MaxAge, MaxFiles: a.MaxFiles, Compress: a.Compress}
}

// DefaultAudit is the audit section every configuration starts from.
func DefaultAudit() Audit {
	return Audit{MaxSize: 256 << 20, MaxAge: 24 * time.Hour, Compress: true}
}

// Defaults returns the configuration every file starts from.
func Defaults() Config {
	l := tlsserver.DefaultLimits()
	return Config{
		Listen:    "127.0.0.1:8443",
		DataDir:   ".mcpsts",
		TLS:       TLS{MinVersion: "1.2"},
		Keys:      Keys{Algorithm: "ES256", RotationPeriod: 24 * time.Hour, RefreshInterval: 30 * time.Second, RSABits: 2048},
		Tokens:    Tokens{DefaultTTL: 15 * time.Minute, MaxTTL: 60 * time.Minute, RevocationCacheFor: 500 * time.Millisecond},
		TrustMaps: TrustMaps{ReloadInterval: 5 * time.Second},
		Limits: Limits{
			PerIdentity: RateLimit{Rate: 10, Burst: 20},
			PerClient:   RateLimit{Rate: 100, Burst: 200},
			PerSource:   RateLimit{Rate: 200, Burst: 400},
		},
		Server: Server{
			ReadHeaderTimeout: l.ReadHeaderTimeout,
			ReadTimeout:       l.ReadTimeout,
			WriteTimeout:      l.WriteTimeout,
			IdleTimeout:       l.IdleTimeout,
			ShutdownTimeout:   l.ShutdownTimeout,
			MaxHeaderBytes:    l.MaxHeaderBytes,
			MaxBodyBytes:      l.MaxBodyBytes,
		},
		Log:   Log{Level: "info", Format: "text"},
		Audit: DefaultAudit(),
	}
}

// StoreURL is the store to open: Store, or the SQLite file in DataDir.
func (c *Config) StoreURL() string {
	if c.Store != "" {
		return c.Store
	}
	return "sqlite:" + filepath.Join(c.DataDir, "mcpsts.db")
}

// ServerLimits converts the server section for tlsserver.
func (c *Config) ServerLimits() tlsserver.Limits {
	s := c.Server
	return tlsserver.Limits{
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		ShutdownTimeout:   s.ShutdownTimeout,
		MaxHeaderBytes:    s.MaxHeaderBytes,
		MaxBodyBytes:      s.MaxBodyBytes,
	}
}

// FieldError is one problem with one field of the configuration.
type FieldError struct {
	File string // the configuration file
	Line int    // 0 when unknown (a default, an environment variable)
	Path string // dotted field path, e.g. tls.cert_file
	Env  string // the environment variable that set the value, if any
	Msg  string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		if e.Env != "" {
			b.WriteString(" (from " + e.Env + ")")
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads file, applies the environment overrides found through getenv
// and validates the result at now. All problems come back at once, joined,
// each a *FieldError.
func Load(file string, getenv func(string) string, now time.Time) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &FieldError{File: file, Msg: "cannot read configuration: " + pathErrorReason(err)}
	}
	d, err := decode(file, data)
	if err != nil {
		return nil, err
	}
	cfg := d.cfg
	from := applyEnv(cfg, getenv)
	cfg.kekInEnv = getenv(KEKEnv) != ""
	// Every problem at once: unknown keys beside what the rest means; a
	// value that could not be decoded is reported once, not checked again.
	errs := d.problems
	if err := cfg.validate(file, d.lines, from, now); err != nil {
		for _, e := range unjoin(err) {
			if fe, ok := e.(*FieldError); ok && under(fe.Path, d.unsound) {
				continue
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// unjoin is the errors err joins, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// pathErrorReason is the reason of a file error without the path, which the
// caller names itself.
func pathErrorReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
