package server

import (
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/mcpsts/mcpsts/exchange"
	"github.com/mcpsts/mcpsts/internal/health"
	"github.com/mcpsts/mcpsts/internal/store"
	"github.com/mcpsts/mcpsts/issuer"
)

// routeConfig is what routes mounts.
type routeConfig struct {
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
	metadata, err := exchange.MetadataHandler(exchange.Metadata{
		Issuer:                            issuerURL,
		JWKSURI:                           paths.Origin + paths.JWKS,
		TokenEndpoint:                     paths.Origin + paths.Token,
		AuthorizationEndpoint:             paths.Origin + paths.Authorize,
		GrantTypesSupported:               []string{exchange.GrantTokenExchange, exchange.GrantJWTBearer, exchange.GrantClientCreds},
		TokenEndpointAuthMethodsSupported: authMethods,
		// private_key_jwt assertions are provider-signed workload JWTs.
		TokenEndpointAuthSigningAlgValuesSupported: signingAlgs,
		TLSClientCertificateBoundAccessTokens:      true, // require_binding: mtls
	})
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
	mux.Handle(paths.Authorize, span("authorize", exchange.AuthorizeHandler()))
	mux.Handle("GET "+paths.OAuth, span("metadata", metadata))
	mux.Handle("GET "+paths.OIDC, span("metadata", metadata))
	if rc.admin != nil {
		mux.Handle("/admin/v1/", span("admin", rc.admin))
	}
	mux.Handle("/", span("not_found", http.NotFoundHandler()))
	return mux, nil
}
