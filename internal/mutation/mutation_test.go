// Package mutation checks that the tests guard the security checks they
// name: each mutant breaks one check, and the tests of the check's own
// package must then fail. Mutants are applied with go test -overlay, so the
// tree is never changed. It runs when MCPSTS_MUTATION=1 (CI sets it):
//
//	MCPSTS_MUTATION=1 go test ./internal/mutation -v
package mutation

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mutant replaces the one occurrence of from in file with to; the tests of
// pkg must fail. pkg may start with "-run NAME" to run only some of them
// (a package whose whole suite takes minutes).
type mutant struct {
	name, file, from, to, pkg string
}

// equivalent are mutants of the audits that cannot change what the code
// does, and why: they are not run.
var equivalent = []struct{ name, file, why string }{
	{"exchange: a registered public client without the grant type", "exchange/grant_id_jag.go",
		"a client let through there is refused by the decision (registeredClients: the client is registered without this grant type) with the same 400 unauthorized_client; the early answer spares the decision; TestRedeemIDJAG checks the answer"},
	{"gateway: an upstream's 101 passed on", "gateway/gateway.go",
		"httputil.ReverseProxy answers 502 itself when a backend switches protocols for a request that asked no upgrade, and the gateway refuses every request that asks one: its own 101 check is defence in depth; TestDisguisedHeadersAndUpgrades checks the 502"},
	{"gateway: the caller's Authorization forwarded", "gateway/gateway.go",
		"resource.Middleware removes the Authorization header before the gateway's handler runs (resource/middleware.go): the gateway's own Del is defence in depth; TestGateway checks the upstream never sees it"},
	{"authorize: a withdrawn consent leaves its refresh tokens", "exchange/authorize/consent_page.go",
		"the store's RevokeConsent revokes the consent's refresh tokens in the same transaction (internal/store, TestRevokingConsentRevokesRefreshTokens): the page's RevokeGrants is the second of two; TestConsentAnswersAndWithdrawal checks the token is gone"},
	{"exchange: a workload authenticates as any client_id", "exchange/grant_id_jag.go",
		"the request names the client (trustmaps.Request.ClientID) and only a map granting that client decides, so a decision for another client is already an error; TestRedeemIDJAG's row of a workload credential of another client is invalid_client"},
	{"fetch: link-local (169.254.169.254) counted public", "federation/fetch.go",
		"netip.Addr.IsGlobalUnicast is false for link-local addresses already, so removing !ip.IsLinkLocalUnicast() changes nothing; TestPublicAddress keeps 169.254.169.254 and fe80::1 refused"},
}

var mutants = []mutant{
	// Issue 32: the gateway's edge, redirect hosts, ID-JAGs of a corporate
	// IdP (checked in attest, caught where they are redeemed).
	{name: "authorize: an unvetted client's request errors redirected", file: "exchange/authorize/endpoint.go",
		from: "\t\tif client.Unvetted {", to: "\t\tif false && client.Unvetted {", pkg: "./exchange/..."},
	{name: "exchange: a dynamic registration takes a registered client's name", file: "exchange/registration.go",
		from: "if sameName(n, md.ClientName) {", to: "if false && sameName(n, md.ClientName) {", pkg: "./exchange"},
	{name: "auditlog: a log whose oldest files are gone verifies from the genesis", file: "internal/auditlog/auditlog.go",
		from: `case i == 0 && start.begins(st) != "":`, to: `case i == 0 && start.begins(st) != "" && !st.firstLineRotated:`, pkg: "./internal/auditlog"},
	{name: "oidc: an ID-JAG's lifetime unbounded", file: "attest/oidc/oidc.go",
		from: "exp.Sub(iat.Time) > max {", to: "exp.Sub(iat.Time) > max && false {", pkg: "./exchange"},
	{name: "attest: an ID-JAG claimed before its client authenticates", file: "attest/attest.go",
		from: `id.ReplayKey == "" || id.ClaimLater {`, to: `id.ReplayKey == "" {`, pkg: "./exchange"},
	{name: "authorize: a redirect host with an IPv6 zone", file: "exchange/authorize/redirect.go",
		from: "return a.Zone() == \"\"", to: "return a.Zone() == \"\" || true", pkg: "./exchange/..."},
	{name: "gateway: a header spelled with '_' forwarded", file: "gateway/gateway.go",
		from: "if name, bad := disguised(r.Header); bad {", to: "if name, bad := disguised(r.Header); false && bad {", pkg: "./gateway"},
	{name: "gateway: an unknown session forwarded", file: "gateway/gateway.go",
		from: "case !known && !g.cfg.UpstreamOwnsSessions:", to: "case false:", pkg: "./gateway"},
	{name: "gateway: any Host accepted", file: "gateway/gateway.go",
		from: `p != "/healthz" && p != "/readyz" && !slices.ContainsFunc(`, to: `false && p != "/healthz" && p != "/readyz" && !slices.ContainsFunc(`, pkg: "./gateway"},
	{name: "gateway: a stream outlives its token", file: "gateway/gateway.go",
		from: "exp.Sub(g.cfg.Clock()), func() { body.Close() })", to: "exp.Sub(g.cfg.Clock()), func() {})", pkg: "./gateway"},
	{name: "resource: a full proof cache forgets a live proof", file: "resource/dpop.go",
		from: "if now.Before(u) && k != key {", to: "if false && now.Before(u) && k != key {", pkg: "./resource"},
	{name: "gateway: an upgrade forwarded", file: "gateway/gateway.go",
		from: "\tif upgrade(r.Header) {", to: "\tif false && upgrade(r.Header) {", pkg: "./gateway"},
	// The outside mutation audit of 2026-12 (issue 39): each caught by its
	// own package's tests.
	{name: "authorize: port freedom for any http IP literal", file: "exchange/authorize/redirect.go",
		from: "if ip == nil || !ip.IsLoopback() || host != ip.String()", to: "if ip == nil || host != ip.String()", pkg: "./exchange/..."},
	{name: "authorize: code_challenge length not checked", file: "exchange/authorize/pkce.go",
		from: "err != nil || len(b) != sha256.Size {\n\t\treturn ErrPKCEChallenge", to: "err != nil || len(b) < 0 {\n\t\treturn ErrPKCEChallenge", pkg: "./exchange/..."},
	{name: "authorize: anything but deny approves", file: "exchange/authorize/endpoint.go",
		from: `if r.PostFormValue("decision") != "approve" {`, to: `if r.PostFormValue("decision") == "deny" {`, pkg: "./exchange/..."},
	{name: "authorize: consent duration not limited to the choices", file: "exchange/authorize/endpoint.go",
		from: "if err != nil || !slices.Contains(consentDurations, life) {", to: "if err != nil {", pkg: "./exchange/..."},
	{name: "authorize: none of the scopes granted asks with none (map defaults)", file: "exchange/authorize/endpoint.go",
		from: "\tif len(granted) == 0 {\n\t\treturn d, err\n\t}\n\treturn ask(granted)", to: "\treturn ask(granted)", pkg: "./exchange/..."},
	{name: "authorize: dpop_jkt not bound to the code", file: "exchange/authorize/endpoint.go",
		from: "Family: Random(16), JKT: f.JKT,", to: `Family: Random(16), JKT: "",`, pkg: "./exchange/..."},
	{name: "authorize: dpop_jkt length not checked", file: "exchange/authorize/endpoint.go",
		from: "DecodeString(jkt); err != nil || len(b) != sha256.Size {", to: "DecodeString(jkt); err != nil || len(b) != sha256.Size && false {", pkg: "./exchange/..."},
	{name: "authorize: upstream ID token aud not compared with our client_id", file: "exchange/authorize/login.go",
		from: `if aud := audiences(id.Attributes["aud"]); !slices.Contains(aud, l.OAuth2.ClientID) {`, to: `if aud := audiences(id.Attributes["aud"]); false && !slices.Contains(aud, l.OAuth2.ClientID) {`, pkg: "./exchange/..."},
	{name: "authorize: the consents page accepts a token of another step", file: "exchange/authorize/consent_page.go",
		from: "if f.Purpose != PurposeConsents || f.Subject == \"\" {", to: "if f.Subject == \"\" {", pkg: "./exchange/..."},
	{name: "exchange: an expired refresh token accepted", file: "exchange/grant_refresh_token.go",
		from: "case !t.cfg.Clock().Before(old.ExpiresAt):", to: "case false:", pkg: "./exchange"},
	{name: "exchange: a refresh for another resource", file: "exchange/grant_refresh_token.go",
		from: "if oerr := sameResource(t, f, old.Resource); oerr != nil {", to: "if oerr := sameResource(t, f, old.Resource); false && oerr != nil {", pkg: "./exchange"},
	{name: "store: LookupRefresh returns used tokens", file: "internal/store/authorization.go",
		from: "case used != 0 || revoked != 0:", to: "case used != 0 && false || revoked != 0:", pkg: "./internal/store"},
	{name: "dpop: the configured algorithm allow-list ignored", file: "dpop/dpop.go",
		from: "\talgs := v.Algorithms\n", to: "\talgs := []string(nil)\n", pkg: "./dpop"},
	{name: "dpop: a jti held only 30 s", file: "dpop/dpop.go", from: "iat.Add(maxAge+future)", to: "iat.Add(30*time.Second)", pkg: "./dpop"},
	{name: "dpop: proof size unbounded", file: "dpop/dpop.go", from: "if len(raw) > MaxProofBytes {", to: "if false {", pkg: "./dpop"},
	{name: "introspection: a user's token authenticates a caller", file: "exchange/introspect.go",
		from: "if err != nil || id.Kind == oidc.UserKind {", to: "if err != nil || id.Kind == oidc.UserKind+\"-\" {", pkg: "./exchange"},
	{name: "introspection: an admin token of any audience", file: "exchange/introspect.go",
		from: "Acceptance{Audience: l.cfg.AdminAudience, Holder: true,", to: "Acceptance{Holder: true,", pkg: "./exchange"},
	{name: "introspection: a sender-constrained admin token used as bearer", file: "exchange/introspect.go",
		from: "Acceptance{Audience: l.cfg.AdminAudience, Holder: true,", to: "Acceptance{Audience: l.cfg.AdminAudience, Holder: false,", pkg: "./exchange"},
	{name: "introspection: another audience's refresh token", file: "exchange/introspect.go",
		from: "case !admin && !slices.Contains(allowed, rt.Resource):", to: "case false:", pkg: "./exchange"},
	{name: "introspection: an expired refresh token active", file: "exchange/introspect.go",
		from: "case !l.t.cfg.Clock().Before(rt.ExpiresAt):", to: "case false:", pkg: "./exchange"},
	{name: "exchange: our own ID-JAG redeemed for scopes wider than it", file: "exchange/grant_id_jag.go",
		from: "\t\tif !slices.Contains(jag.Scopes, s) {\n\t\t\treturn nil, fail(", to: "\t\tif s == \"\\x00\" {\n\t\t\treturn nil, fail(", pkg: "./exchange"},
	{name: "exchange: an ID-JAG's map default scopes beyond the ID-JAG granted", file: "exchange/grant_id_jag.go",
		from: "d.Scopes = slices.DeleteFunc(slices.Clone(d.Scopes), func(s string) bool { return !slices.Contains(granted, s) })", to: "d.Scopes = slices.Clone(d.Scopes)", pkg: "./exchange"},
	{name: "exchange: a user's token as an ID-JAG client credential", file: "exchange/grant_id_jag.go",
		from: "if workload.Kind == oidc.UserKind {", to: "if false {", pkg: "./exchange"},
	{name: "issuer: an ID-JAG's lifetime unbounded", file: "issuer/idjag.go",
		from: "case c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxIDJAGLifetime:", to: "case false:", pkg: "./issuer"},
	{name: "gateway: a client-sent X-MCPSTS-Actor kept", file: "gateway/gateway.go",
		from: `"x-mcpsts-scopes", "x-mcpsts-actor",`, to: `"x-mcpsts-scopes",`, pkg: "./gateway"},
	{name: "gateway: Cookie forwarded", file: "gateway/gateway.go",
		from: `case "authorization", "dpop", "cookie",`, to: `case "authorization", "dpop",`, pkg: "./gateway"},
	{name: "gateway: the upstream answers with another caller's session", file: "gateway/gateway.go",
		from: "} else if owner != p {", to: "} else if owner != p && false {", pkg: "./gateway"},
	{name: "gateway: the response size not capped", file: "gateway/gateway.go",
		from: "\tif !strings.HasPrefix(resp.Header.Get(\"Content-Type\"), \"text/event-stream\") {\n\t\tresp.Body = &capped",
		to:   "\tif false && !strings.HasPrefix(resp.Header.Get(\"Content-Type\"), \"text/event-stream\") {\n\t\tresp.Body = &capped", pkg: "./gateway"},
	{name: "resource: the session principal ignores the client", file: "resource/verify.go",
		from: `p := "sub=" + c.Subject + "\x00client_id=" + c.ClientID`, to: `p := "sub=" + c.Subject`, pkg: "./resource"},
	{name: "resource: the session principal ignores the actor", file: "resource/verify.go",
		from: `p += "\x00act=" + c.Actor.Subject`, to: `p += ""`, pkg: "./resource"},
	{name: "gateway command: request body unbounded", file: "cmd/mcpsts/gateway.go",
		from: "limits.MaxBodyBytes = 4 << 20", to: "limits.MaxBodyBytes = 1 << 40", pkg: "-run TestGateway ./cmd/mcpsts"},
	{name: "server: only the first X-Forwarded-For line read", file: "internal/server/posture.go",
		from: "\t\tfor _, v := range values {\n\t\t\thops = append(hops, strings.Split(v, \",\")...)\n\t\t}", to: "\t\thops = strings.Split(values[0], \",\")", pkg: "-run TestForwardedFor ./internal/server"},
	{name: "impact: source_ip not replayed", file: "trustmaps/impact/impact.go",
		from: "SourceIP: r.Request.SourceIP, ", to: "", pkg: "./trustmaps/impact"},
	{name: "impact: a binding change not reported", file: "trustmaps/impact/impact.go",
		from: `diff("binding", before.Binding, now.Binding)`, to: "", pkg: "./trustmaps/impact"},
	{name: "auditlog: VerifySet accepts an oldest file whose head was cut", file: "internal/auditlog/auditlog.go",
		from: "case start.Seq == 0 && st.firstPrev != genesis:", to: "case false:", pkg: "./internal/auditlog"},
	{name: "auditlog: a rotated-in file readable by others", file: "internal/auditlog/rotate.go",
		from: "os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)", to: "os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)", pkg: "./internal/auditlog"},
	{name: "auditlog: an empty rotated file accepted", file: "internal/auditlog/auditlog.go",
		from: "case st.lines == 0 && i < len(names)-1:", to: "case false:", pkg: "./internal/auditlog"},
	{name: "redis: a bucket refills beyond its burst", file: "internal/redislimits/redislimits.go",
		from: "tokens = math.min(burst, tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * rate)", to: "tokens = tonumber(v[1]) + math.max(0, now - tonumber(v[2])) * rate", pkg: "./internal/redislimits"},
	{name: "redis: a replica with a clock behind refills twice", file: "internal/redislimits/redislimits.go",
		from: "last = math.max(now, tonumber(v[2]))", to: "last = now", pkg: "./internal/redislimits"},
	{name: "limits: a store failure fails open", file: "exchange/ratelimit.go",
		from: "\t\tl.onFail(err)\n\t}\n\treturn l.local.allow(key)", to: "\t\tl.onFail(err)\n\t\treturn true, 0\n\t}\n\treturn l.local.allow(key)", pkg: "./exchange"},
	{name: "trustmaps: subject_pattern unanchored", file: "trustmaps/compile.go",
		from: "regexp.Compile(`^(?:` + m.Match.SubjectPattern + `)$`)", to: "regexp.Compile(`(?:` + m.Match.SubjectPattern + `)`)", pkg: "./trustmaps"},
	{name: "DCR/CIMD: a plain-http redirect URI on any IP literal", file: "exchange/clients.go",
		from: "(ip != nil && ip.IsLoopback()) || p.Hostname() == \"localhost\"", to: "ip != nil || p.Hostname() == \"localhost\"", pkg: "./exchange"},
	{name: "DCR: client_name with control characters or markup", file: "exchange/registration.go",
		from: "len(name) > 128 || strings.ContainsAny(", to: "len(name) > 128 || false && strings.ContainsAny(", pkg: "./exchange"},
	{name: "consent: covers any scope", file: "trustmaps/consent/consent.go",
		from: "\t\tif !slices.Contains(c.Scopes, s) {", to: "\t\tif s == \"\\x00\" {", pkg: "./trustmaps/consent"},
	{name: "consent: covers any resource", file: "trustmaps/consent/consent.go",
		from: "\tif !slices.Contains(c.Resources, resource) {", to: "\tif false {", pkg: "./trustmaps/consent"},
	// Posture and place (issue 23).
	{"posture: an assertion about another workload accepted", "attest/posture/posture.go",
		`case claim == "" || claim != want:`, `case claim == "" || claim != want && claim == "":`, "./attest/posture"},
	{"exchange: dynamic registrations past their cap", "exchange/registration.go",
		`n.DynamicClients() >= cfg.MaxClients`, `n.DynamicClients() > 1<<30`, "./exchange"},
	{"exchange: no overall registration rate", "exchange/registration.go",
		`if ok, wait := overall.allow(""); !ok {`, `if ok, wait := true, time.Duration(0); !ok {`, "./exchange"},
	{"server: a used registration expires", "internal/server/clients.go",
		`if c, err := exchange.ParseClient(rec.Document); err != nil || c.FirstUsedAt != 0 {`, `if _, err := exchange.ParseClient(rec.Document); err != nil {`, "./internal/server"},
	{"server: unused registrations never expire", "internal/server/clients.go",
		`c.RegisteredAt > cutoff {`, `c.RegisteredAt > cutoff-1<<40 {`, "./internal/server"},
	{"auditlog: where max_files left the kept log not recorded", "internal/auditlog/rotate.go",
		"\tif !removed || len(rotated) == 0 {", "\tif !removed || true {", "./internal/auditlog"},
	{"cli: audit verify ignores the kept log's recorded start", "cmd/mcpsts/audit.go",
		"\t\t\t\tif ok {\n\t\t\t\t\tstart = kept", "\t\t\t\tif ok && false {\n\t\t\t\t\tstart = kept", "./cmd/mcpsts"},
	{"auditlog: a denial about an identity counted, not written", "internal/auditlog/aggregate.go",
		`if kv.Key == "mcpsts.subject.id" && kv.Value.Emit() != "" {`, `if kv.Key == "mcpsts.subject.id" && false {`, "./internal/auditlog"},
	{"auditlog: refusals of other sources counted together", "internal/auditlog/aggregate.go",
		`var kindAttrs = []attribute.Key{"mcpsts.source_ip", `, `var kindAttrs = []attribute.Key{`, "./internal/auditlog"},
	{"auditlog: counted refusals never summed up", "internal/auditlog/aggregate.go",
		"\t\tif r.count == 0 {\n\t\t\tcontinue", "\t\tif r.count >= 0 {\n\t\t\tcontinue", "./internal/auditlog"},
	{"gateway: every refusal logged", "cmd/mcpsts/gateway.go",
		"\t\tif written {\n\t\t\tlog.Warn(\"request refused\"", "\t\tif written || true {\n\t\t\tlog.Warn(\"request refused\"", "./cmd/mcpsts"},
	{"resource: tool arguments with names equal but for case", "resource/jsonrpc.go",
		"\t\t\t\t\tif strings.EqualFold(k, key) {", "\t\t\t\t\tif strings.EqualFold(k, key) && false {", "./toolpolicy"},
	{"resource: tool arguments nested without bound", "resource/jsonrpc.go",
		"\tif depth > maxDepth {", "\tif depth > 1<<20 {", "./toolpolicy"},
	{"resource: a batch's denied call answered as a single one", "resource/toolpolicy.go",
		"\t\tcase batch:", "\t\tcase batch && false:", "./toolpolicy"},
	{"toolpolicy: a rule that cannot be evaluated does not deny", "toolpolicy/toolpolicy.go",
		"\t\tcase failed:\n\t\t\td.Effect, d.Rule = Deny, r.ID", "\t\tcase failed:\n\t\t\tcontinue\n\t\t\td.Effect, d.Rule = Deny, r.ID", "./toolpolicy"},
	{"toolpolicy: a tool with rules allowed when none holds", "toolpolicy/toolpolicy.go",
		"\td.Effect = Deny\n\td.Reason = fmt.Sprintf(\"no rule allows", "\td.Effect = Allow\n\td.Reason = fmt.Sprintf(\"no rule allows", "./toolpolicy"},
	{"toolpolicy: a later rule decides before an earlier", "toolpolicy/toolpolicy.go",
		"\t\tcase matched:\n\t\t\td.Effect, d.Rule, d.Scopes = r.Effect, r.ID, r.Scopes", "\t\tcase matched && false:\n\t\t\td.Effect, d.Rule, d.Scopes = r.Effect, r.ID, r.Scopes", "./toolpolicy"},
	{"resource: the tool list not filtered", "resource/middleware.go",
		"if s.cfg.ToolPolicy != nil && body != nil && toolsListed(body) {", "if s.cfg.ToolPolicy != nil && body != nil && toolsListed(body) && false {", "./toolpolicy"},
	{"toolpolicy: tools no rule names shown whatever the default", "toolpolicy/toolpolicy.go",
		"\t\treturn s.toolsWithoutRules == Allow\n\t}\n\tvars", "\t\treturn true\n\t}\n\tvars", "./toolpolicy"},
	{"posture: an assertion bound across providers", "attest/posture/posture.go",
		`case !slices.Contains(src.BindProviders, id.Provider):`, `case false:`, "./attest/posture"},
	{"posture: on_error deny treated as absent", "attest/posture/posture.go",
		"\tif s.onErrorOf[name] == Absent {", "\tif true {", "./attest/posture"},
	{"posture: assertions of any audience", "attest/posture/posture.go",
		"\t\t\toc.Audiences = []string{a.Audience}", "\t\t\toc.NoAudience = true", "./attest/posture"},
	{"posture: a pulled answer served for another identity", "attest/posture/pull.go",
		`key := sha256.Sum256(body)`, `key := sha256.Sum256([]byte(id.Provider))`, "./attest/posture"},
	{"posture: a pulled answer served for another host of the same subject", "attest/posture/pull.go",
		`key := sha256.Sum256(body)`, `key := sha256.Sum256([]byte(id.Provider + "\x00" + id.Subject))`, "./attest/posture"},
	{"trustmaps: a map reading an unavailable source decides", "trustmaps/engine.go",
		"if p.Status == attest.PostureUnavailable && m.reads.readsSource(p.Source) {", "if false {", "./trustmaps"},
	{"trustmaps: geolocation without a database compiles", "trustmaps/cel.go", "if rd.place && c.places == nil {", "if false {", "./trustmaps"},
	{"trustmaps: an unknown address in any country", "trustmaps/place.go", "\t\t\t\tif p.Country == \"\" {\n\t\t\t\t\treturn types.False", "\t\t\t\tif p.Country == \"\" {\n\t\t\t\t\treturn types.True", "./trustmaps"},
	{"server: X-Forwarded-For believed from anyone", "internal/server/posture.go",
		"len(values) == 0 || !isTrusted(peer.Unmap())", "len(values) == 0", "./internal/server"},
	{"server: client-invented hops believed", "internal/server/posture.go", "\t\t\tif !isTrusted(client) {\n\t\t\t\tbreak", "\t\t\tif false {\n\t\t\t\tbreak", "./internal/server"},
	// Enterprise-managed authorization (ID-JAGs).
	{"exchange: an ID-JAG of another client", "exchange/grant_id_jag.go", "\tif client != jagClient {", "\tif false && client != jagClient {", "./exchange"},
	{"exchange: our own ID-JAG of another client", "exchange/grant_id_jag.go", "\tif client != jag.ClientID {", "\tif false && client != jag.ClientID {", "./exchange"},
	{"exchange: an ID-JAG for another authorization server", "exchange/grant_id_jag.go",
		"if !slices.ContainsFunc(audiences(user),", "if false && !slices.ContainsFunc(audiences(user),", "./exchange"},
	{"exchange: an ID token of another client made an ID-JAG", "exchange/grant_id_jag.go", "if !slices.Contains(audiences(user), client) {", "if false {", "./exchange"},
	{"exchange: our own ID-JAG redeemed twice", "exchange/grant_id_jag.go", "case errors.Is(err, attest.ErrReplayed):", "case false && errors.Is(err, attest.ErrReplayed):", "./exchange"},
	{"oidc: ID-JAGs of any provider", "attest/oidc/oidc.go", "case idjag && !(p.IDJAG && p.Users):", "case false:", "./exchange"},
	{"trustmaps: ID-JAGs for any authorization server", "trustmaps/engine.go",
		"if as := r.AuthorizationServer; as != \"\" && ", "if as := r.AuthorizationServer; false && as != \"\" && ", "./trustmaps"},
	// Review of the verifiers and the token endpoint.
	{"issuer: typ not checked (at+jwt for access tokens, oauth-id-jag+jwt for ID-JAGs)", "issuer/verify.go",
		`!strings.EqualFold(strings.TrimPrefix(got, "application/"), typ)`, `false && got == typ`, "./issuer"},
	{"issuer: several audiences accepted", "issuer/verify.go", `len(c.Audience) != 1`, `len(c.Audience) < 1`, "./issuer"},
	{"issuer: ambiguous member names accepted", "issuer/verify.go",
		"if err := claimname.CheckPayload(payloadOf(raw)); err != nil {", "if err := claimname.CheckPayload(payloadOf(raw)); false && err != nil {", "./issuer"},
	{"issuer: cnf not enforced", "issuer/verify.go", "if err := v.Cnf.Holds(peer, \"\"); err != nil {", "if err := error(nil); err != nil {", "./issuer"},
	{"issuer: reserved claims in another case minted", "issuer/mint.go", "if claimname.IsRegistered(name) {", "if false {", "./issuer"},
	{"resource: ambiguous member names accepted", "resource/verify.go",
		"if err := claimname.CheckPayload(payloadOf(raw)); err != nil {", "if err := claimname.CheckPayload(payloadOf(raw)); false && err != nil {", "./resource"},
	{"trustmaps: any extra claim name", "trustmaps/compile.go",
		"if err := claimname.CheckExtra(name); err != nil {", "if err := error(nil); err != nil {", "./trustmaps"},
	{"trustmaps: may_act ignores the provider", "trustmaps/engine.go", "a.provider == actor.Provider && ", "", "./trustmaps"},
	{"consent: inactive consents count", "trustmaps/consent/consent.go", "c.Active(now) && ", "", "./trustmaps/consent"},
	{"exchange: client credentials take a user's token", "exchange/grant_client_credentials.go",
		"if id.Kind == oidc.UserKind {\n\t\treturn nil, fail(http.StatusUnauthorized, errInvalidClient",
		"if id.Kind == oidc.UserKind && false {\n\t\treturn nil, fail(http.StatusUnauthorized, errInvalidClient", "./exchange"},
	{"exchange: a sent client_id other than the decided one", "exchange/token.go", "\tif c == d.ClientID {\n\t\treturn nil", "\tif c != \"\" {\n\t\treturn nil", "./exchange"},
	{"exchange: a code's redirect_uri not compared", "exchange/grant_authorization_code.go", "case c.RedirectURI != redirect:", "case false && c.RedirectURI != redirect:", "./exchange"},
	{"exchange: PKCE not verified", "exchange/grant_authorization_code.go",
		`if err := authorize.VerifyPKCE(c.Challenge, f.get("code_verifier")); err != nil {`, `if err := authorize.VerifyPKCE(c.Challenge, f.get("code_verifier")); false && err != nil {`, "./exchange"},
	{"exchange: a refresh token of another client", "exchange/grant_refresh_token.go", "case old.ClientID != clientID:", "case false:", "./exchange"},
	{"authorize: the loopback port rule for https too", "exchange/authorize/redirect.go", `u.Scheme != "http"`, `u.Scheme == ""`, "./exchange/authorize"},
	{"authorize: PKCE plain accepted", "exchange/authorize/pkce.go", `if method != "S256" {`, `if method != "S256" && method != "plain" {`, "./exchange/authorize"},
	{"exchange: client metadata fetched from private addresses", "exchange/client_metadata.go", "PublicOnly: !o.AllowPrivateAddresses", "PublicOnly: false", "./exchange"},
	{"exchange: a client metadata document for another client_id", "exchange/client_metadata.go", "if md.ClientID != clientID {", "if false {", "./exchange"},
	{"federation: redirects followed for client metadata", "federation/fetch.go", "if o.NoRedirects {", "if false && o.NoRedirects {", "./exchange"},
	{"federation: private addresses counted public", "federation/fetch.go", "!ip.IsPrivate() && ", "", "./federation"},
	{"exchange: request values unbounded", "exchange/audit.go",
		"kv[i] = attribute.String(string(a.Key), bound(v, maxAttrBytes))", "kv[i] = a", "./exchange"},
	{"exchange: no per-source limit", "exchange/token.go",
		"if ok, wait := t.perSource.allow(t.cfg.SourcePrefixes.key(r)); !ok {", "if ok, wait := t.perSource.allow(t.cfg.SourcePrefixes.key(r)); false && !ok {", "./exchange"},
	{"federation: Has ignores the stale bound", "federation/provider.go",
		"if st == nil || p.cfg.Clock().After(st.refreshAt.Add(p.cfg.StaleBound)) {\n\t\treturn false", "if st == nil {\n\t\treturn false", "./federation"},
	{"attest/oidc: cached tokens have no maximum age", "attest/oidc/cache.go", " || tooOld(e, now)", "", "./attest/oidc"},
	{"attest/aws: repeated headers accepted", "attest/aws/aws.go", "if h.Values(kv.Key) != nil {", "if false {", "./attest/aws"},
	{"attest/aws: components after the signature ignored", "attest/aws/aws.go", "Signature=([0-9a-f]{64})$`)", "Signature=([0-9a-f]{64})`)", "./attest/aws"},
	// The browser flows.
	{"authorize: an unregistered redirect URI accepted", "exchange/authorize/endpoint.go",
		"|| !RedirectMatches(client.RedirectURIs, redirect) {", "|| !RedirectMatches(client.RedirectURIs, redirect) && false {", "./exchange"},
	{"authorize: the flow's browser not compared", "exchange/authorize/endpoint.go",
		"cerr != nil || Hash(c.Value) != f.Browser {", "false && (cerr != nil || Hash(c.Value) != f.Browser) {", "./exchange"},
	{"authorize: expired flows accepted", "exchange/authorize/endpoint.go", "} else if !e.cfg.Clock().Before(f.ExpiresAt) {", "} else if false {", "./exchange"},
	{"authorize: no PKCE challenge required", "exchange/authorize/endpoint.go",
		`if err := CheckChallenge(q.Get("code_challenge"), q.Get("code_challenge_method")); err != nil {`,
		`if err := CheckChallenge(q.Get("code_challenge"), q.Get("code_challenge_method")); false && err != nil {`, "./exchange"},
	{"authorize: no consent screen", "exchange/authorize/endpoint.go",
		"case errors.Is(err, consent.ErrNoConsent):\n\t\te.askConsent(w, r, f)", "case errors.Is(err, consent.ErrNoConsent):\n\t\te.issueCode(w, r, f, \"\")", "./exchange"},
	{"authorize: the pages may be framed", "exchange/authorize/pages.go", "; frame-ancestors 'none'", "", "./exchange"},
	{"store: a flow taken twice", "internal/store/authorization.go",
		"UPDATE browser_flows SET taken_at = ? WHERE key_hash = ? AND taken_at = 0", "UPDATE browser_flows SET taken_at = ? WHERE key_hash = ?", "./internal/store"},
	{"registration: confidential clients registered", "exchange/registration.go", `if m := md.TokenEndpointAuthMethod; m != "" && m != "none" {`, "if false {", "./exchange"},
	{"login: the ID token's nonce not compared", "exchange/authorize/login.go",
		`if n, _ := id.Attributes["nonce"].(string); n == "" || n != f.Nonce {`, `if n, _ := id.Attributes["nonce"].(string); false && n != f.Nonce {`, "./internal/server"},
	{"trustmaps: the request's client ignored", "trustmaps/engine.go", `if r.ClientID != "" && clientID != r.ClientID {`, "if false {", "./trustmaps"},
	// Proof of possession and the token lifecycle.
	{"dpop: htu not compared", "dpop/dpop.go", "case !sameURI(cl.HTU, c.URL):", "case false:", "./dpop"},
	{"dpop: proofs replayable", "dpop/dpop.go", `case errors.Is(err, attest.ErrReplayed):
			return Proof{}, invalid("the proof was used before (jti)")`, `case false:
			return Proof{}, invalid("the proof was used before (jti)")`, "./dpop"},
	{"dpop: ath not compared", "dpop/dpop.go", "if c.AccessToken != \"\" {", "if false {", "./dpop"},
	{"dpop: any key for cnf.jkt", "dpop/dpop.go", `if c.JKT != "" && subtle.ConstantTimeCompare([]byte(jkt), []byte(c.JKT)) != 1 {`, "if false {", "./dpop"},
	{"resource: a DPoP-bound token as Bearer", "resource/verify.go", "case dpopBound && scheme != dpop.Scheme:", "case false:", "./resource"},
	{"exchange: a bound refresh token without its key", "exchange/dpop.go", "if p, ok := proofOf(ctx); !ok || p.JKT != jkt {", "if p, ok := proofOf(ctx); false && (!ok || p.JKT != jkt) {", "./exchange"},
	{"exchange: introspection of another audience's token", "exchange/introspect.go", "if !admin && !slices.Contains(allowed, v.Audience) {", "if false {", "./exchange"},
	{"exchange: revocation by another client", "exchange/revoke.go", "if !l.holds(ctx, r, caller, workload, f, v) {", "if false {", "./exchange"},
	{"exchange: single-use tokens reusable", "exchange/accept.go", `		case errors.Is(err, attest.ErrReplayed):
			return issuer.VerifiedToken{}, ErrTokenUsed`, `		case false:
			return issuer.VerifiedToken{}, ErrTokenUsed`, "./exchange"},
	{"exchange: revoked tokens accepted", "exchange/accept.go", `	case revoked:
		return issuer.VerifiedToken{}, ErrTokenRevoked`, `	case revoked && false:
		return issuer.VerifiedToken{}, ErrTokenRevoked`, "./exchange"},
	{"exchange: acceptance ignores the holder", "exchange/accept.go", `	if want.Holder {`, `	if false {`, "./exchange"},
	{"exchange: acceptance ignores the audience", "exchange/accept.go", `if want.Audience != "" && v.Audience != want.Audience {`, `if false {`, "./exchange"},
	{"exchange: a revocation here cached as not revoked", "exchange/accept.go", `	a.cache.Purge()`, `	_ = a.cache`, "./exchange"},
	{"exchange: a reused code leaves its access token", "exchange/grant_authorization_code.go", `		if errors.Is(err, authorize.ErrReused) {
			t.revokeAccess(ctx, c, oerr)
		}`, ``, "./exchange"},
	{"exchange: our own ID-JAG redeemed for another resource", "exchange/grant_id_jag.go", `	if oerr := sameResource(t, f, jag.Resource); oerr != nil {`,
		`	if oerr := sameResource(t, f, jag.Resource); false && oerr != nil {`, "./exchange"},
	{"issuer: a person's sub without their provider", "issuer/mint.go", `if provider, _, ok := strings.Cut(g.Subject, "/"); !ok || provider == "" {`, `if false {`, "./issuer"},
	{"store: a rotation past the family's end", "internal/store/authorization.go", `if !r.FamilyExpiresAt.IsZero() && r.FamilyExpiresAt.Before(nextExpiry) {`, `if false {`, "./internal/store"},
	{"exchange: refresh does not decide again", "exchange/grant_authorization_code.go", `d, oerr := t.decideNarrowed(ctx, r, person, trustmaps.Request{Audience: g.resource, Scopes: asked, ClientID: g.clientID, GrantType: g.grantType})`,
		`d, oerr := trustmaps.Decision{ClientID: g.clientID, Audience: g.resource, Scopes: asked}, (*oauthError)(nil)`, "./exchange"},
	{"auditlog: seq continuity not verified", "internal/auditlog/auditlog.go", "case s != st.lastSeq+1:", "case false:", "./internal/auditlog"},
	{"auditlog: a rotated file need not continue the one before", "internal/auditlog/auditlog.go",
		"case i > 0 && (st.firstPrev != prevHash || st.firstSeq != prevSeq+1):", "case i < 0 && (st.firstPrev != prevHash || st.firstSeq != prevSeq+1):", "./internal/auditlog"},
	{"auditlog: a missing rotated file not named", "internal/auditlog/auditlog.go",
		"case i > 0 && st.continues != strings.TrimSuffix(prevName, \".gz\") && !present[st.continues]:", "case false:", "./internal/auditlog"},
	{"auditlog: a writer keeps the file rotated away", "internal/auditlog/auditlog.go", "if gen := generation(l.lockf); gen != l.gen {", "if gen := generation(l.lockf); false && gen != l.gen {", "./internal/auditlog"},
	{"auditlog: a partial write left in the file", "internal/auditlog/auditlog.go",
		"if terr := l.f.Truncate(size); terr != nil {", "if terr := error(nil); size < 0 && terr != nil {", "./internal/auditlog"},
	{"auditlog: a write failure latches", "internal/auditlog/auditlog.go", "\tl.pending = l.pending[:0]\n\tl.setErr(nil)", "\tl.pending = l.pending[:0]", "./internal/auditlog"},
	{"admin: any extended key usage", "internal/admin/auth.go", "[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}", "[]x509.ExtKeyUsage{x509.ExtKeyUsageAny}", "./internal/admin"},
	{"tlsserver: min_version ignored", "internal/tlsserver/tls.go", "MinVersion:   minVersion,", "MinVersion:   tls.VersionTLS12,", "./internal/tlsserver"},
	{"config: any provider may be named aws", "internal/config/validate.go", "} else if p.Name == AWSProvider {", "} else if false {", "./internal/config"},
	{"config: secrets readable by others", "internal/config/validate.go", "perm&0o077 != 0 {", "perm&0o077 != 0 && false {", "./internal/config"},
	{"store: database readable by others", "internal/store/store.go", "os.O_RDWR|os.O_CREATE, 0o600)", "os.O_RDWR|os.O_CREATE, 0o644)", "./internal/store"},
}

// TestMutants runs each mutant against its guard, the one test of its
// package that catches it (guards), two at a time (MCPSTS_MUTATION_JOBS
// says how many). MCPSTS_MUTATION_FULL=1 runs each against its package's
// whole suite instead and logs the test that caught it: how guards are
// found again when tests move.
func TestMutants(t *testing.T) {
	if os.Getenv("MCPSTS_MUTATION") != "1" {
		t.Skip("set MCPSTS_MUTATION=1 to run the mutation check (minutes)")
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	full := os.Getenv("MCPSTS_MUTATION_FULL") == "1"
	jobs, _ := strconv.Atoi(os.Getenv("MCPSTS_MUTATION_JOBS"))
	if jobs < 1 {
		jobs = 2
	}
	slots := make(chan struct{}, jobs)
	tmp := t.TempDir()
	for i, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()
			path := filepath.Join(root, m.file)
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(src), m.from); n != 1 {
				t.Fatalf("%s holds the mutated text %d times, want once: the check moved; update the mutant", m.file, n)
			}
			dir := filepath.Join(tmp, strconv.Itoa(i))
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			mutated := filepath.Join(dir, filepath.Base(m.file))
			if err := os.WriteFile(mutated, []byte(strings.Replace(string(src), m.from, m.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{path: mutated}})
			ov := filepath.Join(dir, "overlay.json")
			if err := os.WriteFile(ov, overlay, 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{"test", "-count=1", "-failfast", "-overlay=" + ov}
			what := m.pkg
			if full {
				args = append(append(args, "-v"), strings.Fields(m.pkg)...)
			} else {
				g, ok := guardOf(m.name)
				if !ok {
					t.Fatalf("no guard: run the check with MCPSTS_MUTATION_FULL=1 and add the test that catches it to guards")
				}
				args = append(args, "-run", "^"+g.test+"$", g.pkg)
				what = g.test + " in " + g.pkg
			}
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			switch {
			case err == nil:
				t.Errorf("%s passes with the mutant: nothing guards this check (a guard renamed or moved: MCPSTS_MUTATION_FULL=1 finds the tests of %s that catch it)", what, m.pkg)
			case strings.Contains(string(out), "[build failed]") || strings.Contains(string(out), "[setup failed]"):
				t.Errorf("the mutant does not compile:\n%s", out)
			case full:
				t.Logf("caught by %s", caughtBy(out))
			}
		})
	}
}

// guardOf is the guard of the named mutant.
func guardOf(name string) (struct{ mutant, test, pkg string }, bool) {
	for _, g := range guards {
		if g.mutant == name {
			return g, true
		}
	}
	return struct{ mutant, test, pkg string }{}, false
}

// caughtBy names the top-level tests that failed, with their packages,
// as go test -v printed them: where a mutant is guarded.
func caughtBy(out []byte) string {
	var tests, pkgs []string
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "--- FAIL: "):
			tests = append(tests, strings.Fields(line)[2])
		case strings.HasPrefix(line, "FAIL\t"):
			pkgs = append(pkgs, strings.Fields(line)[1])
		}
	}
	return strings.Join(tests, ",") + " in " + strings.Join(pkgs, ",")
}
