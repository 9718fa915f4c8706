package exchange

import (
	"context"
	"net/http"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/oidc"
)

// clientCredentialsGrant is the client credentials grant with a federated
// workload JWT as the client's authentication (RFC 7523 §2.2, the MCP
// client-credentials extension) or an X.509-SVID (tls_client_auth): the
// trust maps decide which client the workload is; a client_id sent along
// must be that one.
type clientCredentialsGrant struct{ t *tokenEndpoint }

func (g clientCredentialsGrant) serve(ctx context.Context, r *http.Request, f form) (*tokenResponse, *oauthError) {
	t := g.t
	var id attest.Identity
	var err error
	switch assertion := f.get("client_assertion"); {
	case assertion != "":
		att, ok := t.cfg.Attestors[GrantJWTBearer]
		if !ok {
			return nil, fail(http.StatusBadRequest, errUnsupportedGrantType, "the client credentials grant is not enabled")
		}
		id, err = att.Attest(ctx, attest.Evidence{Type: AssertionJWTBearer, Token: []byte(assertion), PeerCertificates: peer(r)})
	case len(peer(r)) > 0 && t.cfg.Attestors[EvidenceTLSClient] != nil:
		// tls_client_auth (RFC 8705 §2.1): the client certificate (an
		// X.509-SVID) authenticates; client_id is required.
		if f.get("client_id") == "" {
			return nil, fail(http.StatusUnauthorized, errInvalidClient, "tls_client_auth needs client_id")
		}
		id, err = t.cfg.Attestors[EvidenceTLSClient].Attest(ctx, attest.Evidence{Type: EvidenceTLSClient, PeerCertificates: peer(r)})
	default:
		return nil, fail(http.StatusUnauthorized, errInvalidClient, "the client credentials grant needs client_assertion (a workload JWT, "+AssertionJWTBearer+") or a client certificate (tls_client_auth)")
	}
	if err != nil {
		e := attestError(err, errInvalidClient) // RFC 7523 §3.2
		if e.code == errInvalidClient {
			e.status = http.StatusUnauthorized
		}
		return nil, e
	}
	if id.Kind == oidc.UserKind {
		return nil, fail(http.StatusUnauthorized, errInvalidClient, "a user's token is not a client credential")
	}
	return t.grant(ctx, r, f, id, GrantClientCreds, TokenTypeAccessToken)
}
