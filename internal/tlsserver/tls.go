// Package tlsserver is the only way mcpsts listens: HTTPS with TLS 1.2 or
// newer, AEAD cipher suites with forward secrecy, client certificates
// requested (never required), HSTS on every response and bounded server
// resources. There is no plaintext listener.
package tlsserver

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// cipherSuites are the TLS 1.2 suites we accept: ECDHE key exchange with an
// AEAD cipher. RC4, 3DES, CBC and static-RSA suites are absent. TLS 1.3
// suites are not configurable in Go and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ParseMinVersion maps a configured "1.2" or "1.3" to its constant.
func ParseMinVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	default:
		return 0, fmt.Errorf("tlsserver: TLS version %q is not allowed (want 1.2 or 1.3)", s)
	}
}

// TLSConfig returns the server TLS configuration for cert. minVersion below
// TLS 1.2 is raised to TLS 1.2. Client certificates are requested but not
// verified here: the peer chain reaches handlers through
// http.Request.TLS.PeerCertificates, and attestors verify it against the trust
// bundle they own (a SPIFFE trust domain, a registered client's CA).
func TLSConfig(cert tls.Certificate, minVersion uint16) *tls.Config {
	if minVersion < tls.VersionTLS12 {
		minVersion = tls.VersionTLS12
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   minVersion,
		CipherSuites: cipherSuites,
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// CertificateError explains why a configured server certificate is refused.
type CertificateError struct {
	File   string
	Reason string
}

func (e *CertificateError) Error() string { return e.File + ": " + e.Reason }

// LoadCertificate loads the PEM certificate chain and key a production
// server listens with and checks that the certificate can be served at now:
// the key matches, the leaf is within its validity period, and it is not
// self-signed unless allowSelfSigned. selfSigned reports a self-signed leaf
// that was allowed, so that the caller can warn at every start.
func LoadCertificate(certFile, keyFile string, now time.Time, allowSelfSigned bool) (cert tls.Certificate, selfSigned bool, err error) {
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, false, &CertificateError{File: certFile, Reason: "cannot load certificate and key " + keyFile + ": " + err.Error()}
	}
	leaf := cert.Leaf
	switch {
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, false, &CertificateError{File: certFile, Reason: fmt.Sprintf("certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339))}
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, false, &CertificateError{File: certFile, Reason: fmt.Sprintf("certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.RFC3339))}
	}
	if IsSelfSigned(leaf) {
		if !allowSelfSigned {
			return tls.Certificate{}, false, &CertificateError{File: certFile, Reason: fmt.Sprintf("certificate %q is self-signed; use a certificate from a CA, or set tls.allow_self_signed: true", leaf.Subject.CommonName)}
		}
		return cert, true, nil
	}
	return cert, false, nil
}

// IsSelfSigned reports whether cert names itself as issuer and is signed by
// its own key, whether or not it is marked as a CA (CheckSignatureFrom would
// miss a self-signed leaf).
func IsSelfSigned(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// ErrNoCertificate is returned when a server is started without one.
var ErrNoCertificate = errors.New("tlsserver: no server certificate")
