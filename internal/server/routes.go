package server

import (
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/mcpsts/mcpsts/dpop"
	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/exchange/authorize"
	"github.com/mcpsts/mcpsts/internal/health"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
)

// routeConfig is what routes mounts.
type routeConfig struct {
	// perSource limits every route but the token endpoint, introspection
	// and revocation (which have their own), before anything is read.
	perSource     *exchange.SourceLimiter
	issuer        string
	store         *store.Store
	iss           *issuer.Issuer
	token         http.Handler // has its own server span
	admin         http.Handler
	signingAlgs   []string // of client assertions (private_key_jwt)
	tlsClientAuth bool
	log           *slog.Logger
	traces        trace.TracerProvider
	meters        metric.MeterProvider
	// browser is the browser flows (nil: off); register, dynamic client
	// registration (nil: off); documents, whether client ID metadata
	// documents are accepted; scopes, the described scopes.
	browser *authorize.Endpoint
	// introspect and revoke are RFC 7662 and RFC 7009.
	introspect, revoke http.Handler
	register           http.Handler
	documents          bool
	scopes             map[string]string
}

// routes mounts every handler of the server under the issuer's paths. Each
// request is a server span that continues the caller's traceparent (the
// token endpoint makes its own, with the decision's attributes).
func routes(rc routeConfig) (http.Handler, error) {
	issuerURL, signingAlgs, tlsClientAuth, log, st, iss := rc.issuer, rc.signingAlgs, rc.tlsClientAuth, rc.log, rc.store, rc.iss
	paths, err := exchange.PathsFor(issuerURL)
	if err != nil {
		return nil, err
	}
	authMethods := []string{"none"}
	if len(signingAlgs) > 0 { // RFC 8414: private_key_jwt comes with its algorithms
		authMethods = append(authMethods, "private_key_jwt")
	}
	if tlsClientAuth {
		authMethods = append(authMethods, "tls_client_auth")
	}
	md := exchange.Metadata{
		Issuer:                issuerURL,
		JWKSURI:               paths.Origin + paths.JWKS,
		TokenEndpoint:         paths.Origin + paths.Token,
		AuthorizationEndpoint: paths.Origin + paths.Authorize,
		GrantTypesSupported:   []string{exchange.GrantTokenExchange, exchange.GrantJWTBearer, exchange.GrantClientCreds},
		// ID-JAGs for the users of this server's user providers, as the
		// trust maps allow (grant.authorization_servers).
		IdentityChainingRequestedTokenTypesSupported: []string{exchange.TokenTypeIDJAG},
		TokenEndpointAuthMethodsSupported:            authMethods,
		// private_key_jwt assertions are provider-signed workload JWTs.
		TokenEndpointAuthSigningAlgValuesSupported: signingAlgs,
		TLSClientCertificateBoundAccessTokens:      true, // require_binding: mtls
		DPoPSigningAlgValuesSupported:              dpop.Algorithms,
	}
	if rc.introspect != nil {
		md.IntrospectionEndpoint, md.RevocationEndpoint = paths.Origin+paths.Base+"/introspect", paths.Origin+paths.Base+"/revoke"
		md.IntrospectionEndpointAuthMethodsSupported = []string{"private_key_jwt", "tls_client_auth", "bearer"}
		md.RevocationEndpointAuthMethodsSupported = []string{"none", "private_key_jwt", "tls_client_auth"}
	}
	// The ID-JAG grant is always served (this server redeems the ID-JAGs it
	// issues), and MCP clients check PKCE support in every authorization
	// server's metadata before any flow, the enterprise one too (the Go
	// SDK's extauth); the authorization endpoint, when on, takes S256 only.
	md.CodeChallengeMethodsSupported = []string{"S256"}
	if rc.browser != nil {
		md.ResponseTypesSupported = []string{"code"}
		md.CodeChallengeMethodsSupported = []string{"S256"}
		md.GrantTypesSupported = append(md.GrantTypesSupported, exchange.GrantAuthorizationCode, exchange.GrantRefreshToken)
		md.AuthorizationResponseISSParameterSupported = true
		md.ClientIDMetadataDocumentSupported = rc.documents
		md.ScopesSupported = append(slices.Sorted(maps.Keys(rc.scopes)), exchange.ScopeOfflineAccess)
		if rc.register != nil {
			md.RegistrationEndpoint = paths.Origin + paths.Base + "/register"
		}
	}
	metadata, err := exchange.MetadataHandler(md)
	if err != nil {
		return nil, err
	}
	if rc.traces == nil {
		rc.traces = tracenoop.NewTracerProvider()
	}
	if rc.meters == nil {
		rc.meters = metricnoop.NewMeterProvider()
	}
	span := func(name string, h http.Handler) http.Handler {
		if rc.perSource != nil {
			h = rc.perSource.Handler(h)
		}
		return otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(rc.traces), otelhttp.WithMeterProvider(rc.meters),
			otelhttp.WithPropagators(propagation.TraceContext{}))
	}
	// Introspection and revocation limit their sources themselves.
	ownLimit := func(name string, h http.Handler) http.Handler {
		return otelhttp.NewHandler(h, name, otelhttp.WithTracerProvider(rc.traces), otelhttp.WithMeterProvider(rc.meters),
			otelhttp.WithPropagators(propagation.TraceContext{}))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", span("healthz", health.Live()))
	mux.Handle("GET /readyz", span("readyz", health.Ready(2*time.Second, log,
		health.Check{Name: "store", Check: st.Ping},
		health.Check{Name: "signing_keys", Check: iss.Ready},
	)))
	mux.Handle("GET "+paths.JWKS, span("jwks", iss.JWKSHandler()))
	mux.Handle(paths.Token, rc.token) // every method: others get a JSON 405
	if rc.browser != nil {
		for _, p := range rc.browser.Patterns() {
			mux.Handle(p, span(strings.Trim(strings.TrimPrefix(p, paths.Base), "/"), rc.browser))
		}
		if rc.register != nil {
			mux.Handle(paths.Base+"/register", span("register", rc.register))
		}
	} else {
		mux.Handle(paths.Authorize, span("authorize", exchange.AuthorizeHandler()))
	}
	if rc.introspect != nil {
		mux.Handle(paths.Base+"/introspect", ownLimit("introspect", rc.introspect))
		mux.Handle(paths.Base+"/revoke", ownLimit("revoke", rc.revoke))
	}
	mux.Handle("GET "+paths.OAuth, span("metadata", metadata))
	mux.Handle("GET "+paths.OIDC, span("metadata", metadata))
	if rc.admin != nil {
		mux.Handle("/admin/v1/", span("admin", rc.admin))
	}
	mux.Handle("/", span("not_found", http.NotFoundHandler()))
	return mux, nil
}
