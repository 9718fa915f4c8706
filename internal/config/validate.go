package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

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
	{"tls.key_file", func(c *Config, _ time.Time) string { return fileProblem(c.TLS.KeyFile) }},
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
	{"keys.rsa_bits", func(c *Config, _ time.Time) string {
		if b := c.Keys.RSABits; b < 2048 || b > 8192 || b%1024 != 0 {
			return fmt.Sprintf("%d is not allowed (want 2048, 3072 or 4096 …, at most 8192)", b)
		}
		return ""
	}},
	{"keys.kek_file", func(c *Config, _ time.Time) string {
		switch {
		case c.Keys.KEKFile != "":
			return fileProblem(c.Keys.KEKFile)
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
	for _, ch := range checks {
		if msg := ch.rule(c, now); msg != "" {
			fe := &FieldError{File: file, Path: ch.path, Env: from[ch.path], Msg: msg}
			if fe.Env == "" {
				fe.Line = lines[ch.path]
			}
			errs = append(errs, fe)
		}
	}
	return errors.Join(errs...)
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
