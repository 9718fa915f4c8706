package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestEnsureCreatesAndReuses(t *testing.T) {
	dir := t.TempDir()
	p1, err := Ensure(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{CAFile: 0o644, caKeyFile: 0o600, serverFile: 0o644, serverKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("data dir holds %d files, want 4 (no temporary files left)", len(entries))
	}
	roots := x509.NewCertPool()
	roots.AddCert(p1.CA)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		_, err := p1.Certificate.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: t0})
		if err != nil {
			t.Errorf("server certificate does not verify for %s: %v", name, err)
		}
	}
	if _, ok := p1.Certificate.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || p1.Certificate.Leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Error("server key is not ECDSA")
	}
	if p1.CAPath != filepath.Join(dir, CAFile) {
		t.Errorf("CAPath = %q", p1.CAPath)
	}

	p2, err := Ensure(dir, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !p2.CA.Equal(p1.CA) || !p2.Certificate.Leaf.Equal(p1.Certificate.Leaf) {
		t.Fatal("restart did not reuse the CA and server certificate")
	}

	p3, err := Ensure(dir, t0.Add(70*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !p3.CA.Equal(p1.CA) {
		t.Fatal("renewing the server certificate replaced the CA")
	}
	if p3.Certificate.Leaf.Equal(p1.Certificate.Leaf) {
		t.Fatal("server certificate 20 days from expiry was not renewed")
	}
}

func TestCAIsLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	p, err := Ensure(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, caKey, err := loadPair(dir, CAFile, caKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "bank.example"},
		NotBefore: t0, NotAfter: t0.Add(time.Hour), DNSNames: []string{"bank.example"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leaf, _, err := sign(tmpl, p.CA, key, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CA)
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "bank.example", Roots: roots, CurrentTime: t0.Add(time.Minute)})
	if _, ok := err.(x509.CertificateInvalidError); !ok {
		t.Fatalf("leaf for bank.example verified under the dev CA: err = %v", err)
	}
}

func TestEnsureErrors(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string
	}{
		{"CA key missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, caKeyFile))
		}, "ca-key.pem: no such file"},
		{"server cert garbage", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, serverFile), []byte("not a certificate"), 0o644)
		}, "server.pem and"},
		{"key does not match", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, serverKeyFile))
			os.WriteFile(filepath.Join(dir, caKeyFile), b, 0o600)
		}, "ca.pem and"},
		{"directory missing", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
		}, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Ensure(dir, t0); err != nil {
				t.Fatal(err)
			}
			tt.prepare(t, dir)
			_, err := Ensure(dir, t0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Ensure = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEnsureKEK(t *testing.T) {
	dir := t.TempDir()
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte("secret-kek\n"), nil }
	a, err := EnsureKEK(dir, gen)
	if err != nil || string(a) != "secret-kek\n" {
		t.Fatalf("EnsureKEK = %q, %v", a, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, KEKFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kek mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := EnsureKEK(dir, gen)
	if err != nil || string(b) != string(a) || calls != 1 {
		t.Fatalf("second EnsureKEK = %q, %v after %d generations; want the same key, generated once", b, err, calls)
	}
}
