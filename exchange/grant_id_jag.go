package exchange

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
	"github.com/mcpsts/mcpsts/issuer"
	"github.com/mcpsts/mcpsts/trustmaps"
	"github.com/mcpsts/mcpsts/trustmaps/impact"
)

// TokenTypeIDJAG is the token type of an Identity Assertion JWT
// Authorization Grant (SEP-990), requested in a token exchange.
const TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"

// IDJAGIssuer signs ID-JAGs and verifies its own; *issuer.Issuer is one.
type IDJAGIssuer interface {
	MintIDJAG(ctx context.Context, g issuer.IDJAG) (issuer.Token, error)
	VerifyIDJAG(raw, audience string) (issuer.VerifiedIDJAG, error)
}

// joseType returns the typ of a compact JWS's protected header, or "" when
// it has none or is not one.
func joseType(token string) string {
	var h struct {
		Typ string `json:"typ"`
	}
	attest.UnverifiedSegment(token, 0, &h)
	return h.Typ
}

// idjagRequest reports whether a request asks for an ID-JAG or redeems
// one: the requests whose client authenticates (client_assertion, a
// certificate or a registered public client) beside the grant itself.
func idjagRequest(grantType string, f form) bool {
	switch grantType {
	case GrantJWTBearer:
		return oidc.IsIDJAGType(joseType(f.get("assertion")))
	case GrantTokenExchange:
		return f.get("requested_token_type") == TokenTypeIDJAG
	}
	return false
}

// ownIDJAG reports whether assertion is an ID-JAG that names this server as
// its issuer (unverified: it is then verified with this server's keys).
func (t *tokenEndpoint) ownIDJAG(assertion string) bool {
	if t.cfg.IDJAGs == nil || !oidc.IsIDJAGType(joseType(assertion)) {
		return false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	attest.UnverifiedSegment(assertion, 1, &c)
	return c.Iss != "" && slices.Contains(t.cfg.Self, strings.TrimSuffix(c.Iss, "/"))
}

// redeemOwnIDJAG is the JWT bearer grant of an ID-JAG this server issued
// for itself (mcpsts as both the users' identity provider and the MCP
// authorization server): verified with its own keys, addressed to itself,
// its jti claimed once, issued to the authenticated client. The trust maps
// decided it moments ago (at most 5 minutes) for that user, client,
// resource and scopes, with this server among the grant's
// authorization_servers; the access token carries exactly that.
func (t *tokenEndpoint) redeemOwnIDJAG(ctx context.Context, r *http.Request, f form, assertion string) (*tokenResponse, *oauthError) {
	annotate(ctx, attribute.String(attrSubjectKind, "id-jag"))
	var jag issuer.VerifiedIDJAG
	var err error
	for _, self := range t.cfg.Self {
		if jag, err = t.cfg.IDJAGs.VerifyIDJAG(assertion, self); err == nil {
			break
		}
	}
	if err != nil {
		e := fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG was refused")
		e.detail, e.check = err.Error(), "id_jag_invalid"
		return nil, e
	}
	annotate(ctx, attribute.String(attrSubject, jag.Subject), attribute.String(attrRequestAudience, jag.Resource))
	if oerr := sameResource(t, f, jag.Resource); oerr != nil {
		oerr.description = "resource differs from the ID-JAG's"
		return nil, oerr
	}
	// The revocation list holds for our ID-JAGs as for our access tokens:
	// by jti, by the person (sub), by the client.
	if t.cfg.Acceptor != nil {
		switch revoked, err := t.cfg.Acceptor.Revoked(ctx, jag.ID, jag.Subject, jag.ClientID, jag.IssuedAt); {
		case err != nil:
			return nil, storeUnavailable(err)
		case revoked:
			e := fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG is revoked")
			e.check = "token_revoked"
			return nil, e
		}
	}
	if t.cfg.Replay == nil {
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "this server cannot redeem its own ID-JAGs (no replay cache)")
	}
	client, oerr := t.authenticateClient(ctx, r, f, GrantJWTBearer, jag.Resource)
	if oerr != nil {
		return nil, oerr
	}
	if client != jag.ClientID {
		e := fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG was issued to another client")
		e.check = "id_jag_client"
		return nil, e
	}
	if oerr := t.claimIDJAG(ctx, "idjag:"+jag.ID, jag.ExpiresAt); oerr != nil {
		return nil, oerr
	}
	scopes := strings.Fields(f.get("scope"))
	for _, s := range scopes {
		if !slices.Contains(jag.Scopes, s) {
			return nil, fail(http.StatusBadRequest, errInvalidScope, "a requested scope is not in the ID-JAG")
		}
	}
	if len(scopes) == 0 {
		scopes = jag.Scopes
	}
	// The person the ID-JAG names, as it was decided for then: the trust
	// maps decide again now (binding, single use, claims, lifetime,
	// conditions), never wider than the ID-JAG.
	person, ok := personOf(jag)
	if !ok {
		e := fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG does not name a person of this server")
		e.check = "id_jag_invalid"
		return nil, e
	}
	annotate(ctx, attribute.String(attrProvider, person.Provider))
	d, oerr := t.decideGrant(ctx, r, person, trustmaps.Request{Audience: jag.Resource, Scopes: scopes, ClientID: client, GrantType: GrantJWTBearer})
	if oerr != nil {
		return nil, oerr
	}
	if ok, wait := t.perClient.allow(ctx, client); !ok {
		return nil, limited("client", wait)
	}
	d.Scopes = slices.DeleteFunc(slices.Clone(d.Scopes), func(s string) bool { return !slices.Contains(jag.Scopes, s) })
	annotate(ctx, attribute.String(attrIDJAGTarget, jag.Audience))
	return t.issue(ctx, r, d, principal{subject: userSubject(person), kind: issuer.User}, scopes, TokenTypeAccessToken)
}

// personOf reads the person an ID-JAG of this server names: its sub is
// user:PROVIDER/SUBJECT, and mcpsts_person what the maps read of them.
func personOf(jag issuer.VerifiedIDJAG) (attest.Identity, bool) {
	provider, subject, ok := strings.Cut(strings.TrimPrefix(jag.Subject, issuer.UserSubjectPrefix), "/")
	if !strings.HasPrefix(jag.Subject, issuer.UserSubjectPrefix) || !ok || provider == "" || subject == "" {
		return attest.Identity{}, false
	}
	id := attest.Identity{Kind: oidc.UserKind, Provider: provider, Subject: subject, Expiry: jag.ExpiresAt}
	id.Issuer, _ = jag.Person["iss"].(string)
	id.Attributes, _ = jag.Person["attributes"].(map[string]any)
	return id, true
}

// claimIDJAG uses an ID-JAG up, once its client has shown itself: a stolen
// ID-JAG presented by someone else does not use it up. Ours and those of
// the providers alike.
func (t *tokenEndpoint) claimIDJAG(ctx context.Context, key string, until time.Time) *oauthError {
	if t.cfg.Replay == nil || key == "" {
		return fail(http.StatusBadRequest, errInvalidGrant, "this server cannot redeem ID-JAGs (no replay cache)")
	}
	switch err := t.cfg.Replay.Claim(ctx, key, until); {
	case errors.Is(err, attest.ErrReplayed):
		e := fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG was used before")
		e.check = "token_replayed"
		return e
	case err != nil:
		return &oauthError{status: http.StatusServiceUnavailable, code: errUnavailable, description: "the ID-JAG cannot be checked now; retry later", detail: err.Error()}
	}
	return nil
}

// authenticateClient authenticates the client of an ID-JAG request (either
// role) and returns its ID: a workload credential (private_key_jwt, RFC 7523
// §2.2) or an X.509-SVID (tls_client_auth), whose trust maps must give it
// the client_id it sends, or a registered public client allowed this grant.
// resource is the MCP server the request is about.
func (t *tokenEndpoint) authenticateClient(ctx context.Context, r *http.Request, f form, grantType, resource string) (string, *oauthError) {
	clientID := f.get("client_id")
	if clientID == "" {
		return "", fail(http.StatusUnauthorized, errInvalidClient, "client_id is required")
	}
	var ev attest.Evidence
	var att attest.Attestor
	switch {
	case f.get("client_assertion") != "":
		if f.get("client_assertion_type") != AssertionJWTBearer {
			return "", fail(http.StatusUnauthorized, errInvalidClient, "client_assertion_type must be "+AssertionJWTBearer)
		}
		att, ev = t.cfg.Attestors[GrantJWTBearer], attest.Evidence{Type: AssertionJWTBearer, Token: []byte(f.get("client_assertion")), PeerCertificates: peer(r)}
	case len(peer(r)) > 0 && t.cfg.Attestors[EvidenceTLSClient] != nil:
		att, ev = t.cfg.Attestors[EvidenceTLSClient], attest.Evidence{Type: EvidenceTLSClient, PeerCertificates: peer(r)}
	default:
		// A registered public client allowed this grant.
		if t.cfg.Clients != nil {
			c, ok, err := t.cfg.Clients.Client(ctx, clientID)
			if err != nil {
				return "", &oauthError{status: http.StatusServiceUnavailable, code: errUnavailable, description: "the client cannot be checked now; retry later", detail: err.Error()}
			}
			switch {
			case ok && slices.Contains(c.GrantTypes, grantType):
				return clientID, nil
			case ok:
				// A public client is who it says; this grant is not its
				// (RFC 6749 §5.2), as at every other grant.
				return "", fail(http.StatusBadRequest, errUnauthorizedClient, "the client is registered without this grant type")
			}
		}
		return "", fail(http.StatusUnauthorized, errInvalidClient, "authenticate the client: a workload credential (client_assertion), a client certificate, or a registered public client allowed this grant")
	}
	if att == nil {
		return "", fail(http.StatusUnauthorized, errInvalidClient, "this client authentication is not enabled")
	}
	workload, err := att.Attest(ctx, ev)
	if err != nil {
		e := attestError(err, errInvalidClient)
		e.status, e.code = http.StatusUnauthorized, errInvalidClient
		return "", e
	}
	if workload.Kind == oidc.UserKind {
		return "", fail(http.StatusUnauthorized, errInvalidClient, "a user's token is not a client credential")
	}
	annotateIdentity(ctx, workload, true)
	req := trustmaps.Request{Audience: resource, ClientID: clientID, GrantType: grantType,
		SourceIP: sourceIP(r), MTLS: len(peer(r)) > 0, Time: t.cfg.Clock()}
	t.conditionInputs(ctx, workload, &req)
	d, err := t.cfg.Decider.Decide(ctx, workload, req)
	if err != nil || d.ClientID != clientID {
		e := fail(http.StatusUnauthorized, errInvalidClient, "no trust map makes this workload the client "+truncate(clientID))
		if err != nil {
			e.detail = err.Error()
		}
		return "", e
	}
	return clientID, nil
}

// claimString reads a string claim of an attested token.
func claimString(id attest.Identity, name string) string {
	s, _ := id.Attributes[name].(string)
	return s
}

// audiences reads the aud claim, a string or a list of strings.
func audiences(id attest.Identity) []string {
	switch v := id.Attributes["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// redeemIDJAG is the JWT bearer grant of an ID-JAG (SEP-990, mcpsts as the
// MCP authorization server): the assertion is the user's grant, verified by
// a user provider marked id_jag (exact issuer, keys, algorithms, lifetime,
// its jti claimed once); it must be addressed to this server and issued to
// the authenticated client; the trust maps for that user and client must
// grant its resource; the scopes are never wider than the ID-JAG's and the
// map's.
func (t *tokenEndpoint) redeemIDJAG(ctx context.Context, r *http.Request, f form, user attest.Identity) (*tokenResponse, *oauthError) {
	annotateIdentity(ctx, user, false)
	annotate(ctx, attribute.String(attrSubjectKind, "id-jag"))
	if !slices.ContainsFunc(audiences(user), func(a string) bool { return slices.Contains(t.cfg.Self, strings.TrimSuffix(a, "/")) }) {
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG is addressed to another authorization server")
	}
	jagClient, resource := claimString(user, "client_id"), claimString(user, "resource")
	if jagClient == "" || resource == "" {
		return nil, fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG lacks client_id or resource")
	}
	if v := f.get("resource"); v != "" {
		a, errA := trustmaps.CanonicalResource(v)
		b, errB := trustmaps.CanonicalResource(resource)
		if errA != nil || errB != nil || a != b {
			return nil, fail(http.StatusBadRequest, errInvalidTarget, "resource differs from the ID-JAG's")
		}
	}
	client, oerr := t.authenticateClient(ctx, r, f, GrantJWTBearer, resource)
	if oerr != nil {
		return nil, oerr
	}
	if client != jagClient {
		e := fail(http.StatusBadRequest, errInvalidGrant, "the ID-JAG was issued to another client")
		e.check = "id_jag_client"
		return nil, e
	}
	if oerr := t.claimIDJAG(ctx, user.ReplayKey, user.Expiry); oerr != nil {
		return nil, oerr
	}
	granted := strings.Fields(claimString(user, "scope"))
	scopes := strings.Fields(f.get("scope"))
	for _, s := range scopes {
		if !slices.Contains(granted, s) {
			return nil, fail(http.StatusBadRequest, errInvalidScope, "a requested scope is not in the ID-JAG")
		}
	}
	if len(scopes) == 0 {
		scopes = granted
	}
	annotate(ctx, attribute.String(attrRequestAudience, resource), attribute.String(attrRequestScopes, strings.Join(scopes, " ")))
	if ok, wait := t.perIdentity.allow(ctx, user.Provider+"\x00"+user.Subject); !ok {
		return nil, limited("identity", wait)
	}
	d, oerr := t.decideGrant(ctx, r, user, trustmaps.Request{Audience: resource, Scopes: scopes, ClientID: client, GrantType: GrantJWTBearer})
	if oerr != nil {
		return nil, oerr
	}
	if ok, wait := t.perClient.allow(ctx, d.ClientID); !ok {
		return nil, limited("client", wait)
	}
	// Default scopes of the map are granted only as far as the ID-JAG goes.
	d.Scopes = slices.DeleteFunc(slices.Clone(d.Scopes), func(s string) bool { return !slices.Contains(granted, s) })
	return t.issue(ctx, r, d, principal{subject: userSubject(user), kind: issuer.User}, scopes, TokenTypeAccessToken)
}

// issueIDJAG answers a token exchange for an ID-JAG (SEP-990, mcpsts as the
// identity provider): the subject is a user's ID token issued to the
// authenticated client; the trust maps for that user and client decide the
// target authorization server (audience), the MCP server (resource) and the
// scopes. The answer is the ID-JAG, token_type N_A, at most 5 minutes.
func (t *tokenEndpoint) issueIDJAG(ctx context.Context, r *http.Request, f form, user attest.Identity) (*tokenResponse, *oauthError) {
	annotateIdentity(ctx, user, false)
	if t.cfg.IDJAGs == nil {
		return nil, fail(http.StatusBadRequest, errInvalidRequest, "this server does not issue ID-JAGs")
	}
	target, resource := strings.TrimSuffix(f.get("audience"), "/"), f.get("resource")
	if target == "" || resource == "" || len(f["audience"]) > 1 || len(f["resource"]) > 1 {
		return nil, fail(http.StatusBadRequest, errInvalidTarget, "an ID-JAG names one authorization server (audience) and one MCP server (resource)")
	}
	canon, err := trustmaps.CanonicalResource(resource)
	if err != nil {
		return nil, fail(http.StatusBadRequest, errInvalidTarget, "resource "+err.Error())
	}
	client, oerr := t.authenticateClient(ctx, r, f, GrantTokenExchange, canon)
	if oerr != nil {
		return nil, oerr
	}
	if !slices.Contains(audiences(user), client) {
		e := fail(http.StatusBadRequest, errInvalidRequest, "the ID token was issued to another client")
		e.check = "id_token_client"
		return nil, e
	}
	scopes := strings.Fields(f.get("scope"))
	annotate(ctx, attribute.String(attrRequestAudience, canon), attribute.String(attrRequestScopes, strings.Join(scopes, " ")),
		attribute.String(attrIDJAGTarget, truncate(target)), attribute.String(attrIssuedType, "id-jag"))
	if ok, wait := t.perIdentity.allow(ctx, user.Provider+"\x00"+user.Subject); !ok {
		return nil, limited("identity", wait)
	}
	d, oerr := t.decideGrant(ctx, r, user, trustmaps.Request{Audience: canon, Scopes: scopes, ClientID: client, AuthorizationServer: target,
		GrantType: GrantTokenExchange})
	if oerr != nil {
		return nil, oerr
	}
	g := issuer.IDJAG{Subject: issuer.UserSubjectPrefix + userSubject(user), Audience: target, Resource: d.Audience, ClientID: client, Scopes: d.Scopes}
	if slices.Contains(t.cfg.Self, target) {
		// Redeemed here: what the maps read of the person goes along, for
		// the redemption to decide again (another server gets none).
		g.Person = map[string]any{"iss": user.Issuer}
		if t.cfg.ReplayAttributes != nil {
			names, all := t.cfg.ReplayAttributes()
			if a := impact.Recorded(user.Attributes, names, all); a != nil {
				g.Person["attributes"] = a
			}
		}
	}
	tok, err := t.cfg.IDJAGs.MintIDJAG(ctx, g)
	if err != nil {
		return nil, mintError(err)
	}
	annotateToken(ctx, tok, "")
	resp := &tokenResponse{AccessToken: tok.Raw, IssuedTokenType: TokenTypeIDJAG, TokenType: "N_A",
		ExpiresIn: max(1, int64(tok.ExpiresAt.Sub(t.cfg.Clock()).Seconds()))}
	if granted := strings.Join(d.Scopes, " "); granted != strings.Join(scopes, " ") {
		resp.Scope = granted
	}
	return resp, nil
}
