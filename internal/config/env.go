package config

// envOverrides is the documented set of environment variables that override
// the file. Each names the field path it sets.
var envOverrides = []struct {
	env, path string
	field     func(*Config) *string
}{
	{"MCPSTS_ISSUER", "issuer", func(c *Config) *string { return &c.Issuer }},
	{"MCPSTS_LISTEN", "listen", func(c *Config) *string { return &c.Listen }},
	{"MCPSTS_DATA_DIR", "data_dir", func(c *Config) *string { return &c.DataDir }},
	{"MCPSTS_STORE", "store", func(c *Config) *string { return &c.Store }},
	{"MCPSTS_TLS_CERT_FILE", "tls.cert_file", func(c *Config) *string { return &c.TLS.CertFile }},
	{"MCPSTS_TLS_KEY_FILE", "tls.key_file", func(c *Config) *string { return &c.TLS.KeyFile }},
	{"MCPSTS_LOG_LEVEL", "log.level", func(c *Config) *string { return &c.Log.Level }},
}

// EnvVars lists the environment variables that override the file.
func EnvVars() []string {
	out := make([]string, len(envOverrides))
	for i, o := range envOverrides {
		out[i] = o.env
	}
	return out
}

// applyEnv sets every field whose variable is non-empty and returns which
// variable set which path.
func applyEnv(c *Config, getenv func(string) string) map[string]string {
	from := map[string]string{}
	for _, o := range envOverrides {
		if v := getenv(o.env); v != "" {
			*o.field(c) = v
			from[o.path] = o.env
		}
	}
	return from
}
