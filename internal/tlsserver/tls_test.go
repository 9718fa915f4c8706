package tlsserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpsts/mcpsts/internal/devpki"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// writeCert writes a certificate for localhost valid from notBefore to
// notAfter, signed by parent (self-signed when parent is nil), and its key.
func writeCert(t *testing.T, dir string, notBefore, notAfter time.Time, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

func TestLoadCertificate(t *testing.T) {
	caDir := t.TempDir()
	pki, err := devpki.Ensure(caDir, now)
	if err != nil {
		t.Fatal(err)
	}
	caKeyPEM, _ := os.ReadFile(filepath.Join(caDir, "ca-key.pem"))
	block, _ := pem.Decode(caKeyPEM)
	k, _ := x509.ParsePKCS8PrivateKey(block.Bytes)
	caKey := k.(*ecdsa.PrivateKey)

	tests := []struct {
		name           string
		files          func(t *testing.T, dir string) (string, string)
		allowSelf      bool
		wantErr        string
		wantSelfSigned bool
	}{
		{"CA-issued", func(t *testing.T, dir string) (string, string) {
			return writeCert(t, dir, now.Add(-time.Hour), now.Add(time.Hour), pki.CA, caKey)
		}, false, "", false},
		{"expired", func(t *testing.T, dir string) (string, string) {
			return writeCert(t, dir, now.Add(-2*time.Hour), now.Add(-time.Hour), pki.CA, caKey)
		}, false, `certificate "localhost" expired at 2026-11-25T11:00:00Z`, false},
		{"not yet valid", func(t *testing.T, dir string) (string, string) {
			return writeCert(t, dir, now.Add(time.Hour), now.Add(2*time.Hour), pki.CA, caKey)
		}, false, "is not valid before 2026-11-25T13:00:00Z", false},
		{"self-signed refused", func(t *testing.T, dir string) (string, string) {
			return writeCert(t, dir, now.Add(-time.Hour), now.Add(time.Hour), nil, nil)
		}, false, "is self-signed; use a certificate from a CA, or set tls.allow_self_signed: true", false},
		{"self-signed allowed", func(t *testing.T, dir string) (string, string) {
			return writeCert(t, dir, now.Add(-time.Hour), now.Add(time.Hour), nil, nil)
		}, true, "", true},
		{"expired self-signed allowed is still expired", func(t *testing.T, dir string) (string, string) {
			return writeCert(t, dir, now.Add(-2*time.Hour), now.Add(-time.Hour), nil, nil)
		}, true, "expired at", false},
		{"missing file", func(t *testing.T, dir string) (string, string) {
			return filepath.Join(dir, "nope.pem"), filepath.Join(dir, "nope-key.pem")
		}, false, "no such file or directory", false},
		{"key does not match", func(t *testing.T, dir string) (string, string) {
			c, _ := writeCert(t, dir, now.Add(-time.Hour), now.Add(time.Hour), pki.CA, caKey)
			return c, filepath.Join(caDir, "ca-key.pem")
		}, false, "private key does not match public key", false},
		{"not PEM", func(t *testing.T, dir string) (string, string) {
			c, k := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
			os.WriteFile(c, []byte("hello"), 0o644)
			os.WriteFile(k, []byte("hello"), 0o600)
			return c, k
		}, false, "cannot load certificate and key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := tt.files(t, t.TempDir())
			cert, selfSigned, err := LoadCertificate(certFile, keyFile, now, tt.allowSelf)
			if tt.wantErr != "" {
				var ce *CertificateError
				if !errors.As(err, &ce) || ce.File != certFile || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadCertificate = %v, want a CertificateError for %s containing %q", err, certFile, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadCertificate = %v", err)
			}
			if cert.Leaf == nil || selfSigned != tt.wantSelfSigned {
				t.Fatalf("selfSigned = %v, want %v", selfSigned, tt.wantSelfSigned)
			}
		})
	}
}
