package tlsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Limits bound what one client can make the server hold.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds the graceful shutdown: in-flight requests get
	// this long to finish, then their connections are closed.
	ShutdownTimeout time.Duration
	MaxHeaderBytes  int
	MaxBodyBytes    int64
}

// DefaultLimits suit an OAuth token service: small requests, fast answers.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   20 * time.Second,
		MaxHeaderBytes:    16 << 10,
		MaxBodyBytes:      256 << 10,
	}
}

// HSTS is the Strict-Transport-Security value sent on every response.
const HSTS = "max-age=63072000; includeSubDomains"

// Config describes one listener.
type Config struct {
	Addr string // host:port; port 0 picks a free port
	// Listener, when set, is served instead of binding Addr (a caller
	// that bound the port itself, such as a test that must know the
	// address before the server's configuration is written).
	Listener net.Listener
	TLS      *tls.Config // from TLSConfig
	Limits   Limits
	Log      *slog.Logger
}

// Server is an HTTPS server bound to its address.
type Server struct {
	srv             *http.Server
	ln              net.Listener
	shutdownTimeout time.Duration
	maxBody         int64
}

// Listen binds cfg.Addr. Serve then serves on it; in between, Addr tells
// the bound address (what a handler may need to know, such as its own URL).
func Listen(cfg Config) (*Server, error) {
	if cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, ErrNoCertificate
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("tlsserver: listen on %s: %w", cfg.Addr, err)
		}
	}
	l := cfg.Limits
	return &Server{
		srv: &http.Server{
			TLSConfig:         cfg.TLS.Clone(),
			ReadHeaderTimeout: l.ReadHeaderTimeout,
			ReadTimeout:       l.ReadTimeout,
			WriteTimeout:      l.WriteTimeout,
			IdleTimeout:       l.IdleTimeout,
			MaxHeaderBytes:    l.MaxHeaderBytes,
			// Handshake failures and plain-HTTP probes are routine noise.
			ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
		},
		ln:              ln,
		shutdownTimeout: l.ShutdownTimeout,
		maxBody:         l.MaxBodyBytes,
	}, nil
}

// Close releases the listener of a server that will not Serve.
func (s *Server) Close() error { return s.ln.Close() }

// Addr is the bound address (with the chosen port when 0 was asked for).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves h over HTTPS, wrapped by Secure, until ctx is done, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish within the shutdown timeout,
// then closes what is left and reports that it had to. A plain HTTP request
// to the port gets 400 from net/http and the connection is closed; nothing
// is ever redirected.
func (s *Server) Serve(ctx context.Context, h http.Handler) error {
	s.srv.Handler = Secure(h, s.maxBody)
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ServeTLS(s.ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("tlsserver: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(shutdownCtx)
	<-errc // ServeTLS has returned http.ErrServerClosed
	if errors.Is(err, context.DeadlineExceeded) {
		s.srv.Close()
		return fmt.Errorf("tlsserver: requests still running after the %s shutdown timeout were cut off", s.shutdownTimeout)
	}
	return err
}

// Secure wraps h with what every response and request gets: HSTS and
// nosniff headers, and a cap on the request body (larger declared bodies
// are refused with 413 before h runs; larger streamed bodies fail h's read
// with *http.MaxBytesError).
func Secure(h http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", HSTS)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if maxBody > 0 {
			if r.ContentLength > maxBody {
				w.Header().Set("Connection", "close")
				http.Error(w, "request body larger than "+strconv.FormatInt(maxBody, 10)+" bytes", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		h.ServeHTTP(w, r)
	})
}
