// Package devpki makes and keeps the local secrets of `mcpsts serve --dev`:
// the certificate authority and server certificate it listens with, and the
// key-encryption key that seals its signing keys. The CA is name constrained
// to loopback names, so trusting it on a workstation cannot vouch for any
// other host.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside the data directory.
const (
	CAFile        = "ca.pem"
	caKeyFile     = "ca-key.pem"
	serverFile    = "server.pem"
	serverKeyFile = "server-key.pem"
	// KEKFile holds the base64 key-encryption key.
	KEKFile = "kek"
	// AdminCertFile and AdminKeyFile are the development administrator's
	// client certificate (common name AdminName) and key, for the admin API.
	AdminCertFile = "admin.pem"
	AdminKeyFile  = "admin-key.pem"
	AdminName     = "mcpsts-dev-admin"
)

const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 90 * 24 * time.Hour
	// A server certificate with less than this left is issued again.
	renewBefore = 30 * 24 * time.Hour
)

// PKI is the development CA and the server certificate it issued.
type PKI struct {
	CAPath      string // the PEM file clients trust
	CA          *x509.Certificate
	Certificate tls.Certificate // the server's, with Leaf set
}

// Ensure loads the CA and server certificate from dir, which must exist,
// creating what is missing: a new CA (and server certificate) when there is
// none, a new server certificate when the old one nears expiry or no longer
// chains to the CA. Keys are written with mode 0600, each file atomically.
func Ensure(dir string, now time.Time) (*PKI, error) {
	ca, caKey, err := loadPair(dir, CAFile, caKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		ca, caKey, err = newCA(now)
		if err == nil {
			err = writePair(dir, CAFile, caKeyFile, ca, caKey)
		}
	}
	if err != nil {
		return nil, err
	}
	leaf, leafKey, err := loadPair(dir, serverFile, serverKeyFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil || needsRenewal(leaf, ca, now) {
		if leaf, leafKey, err = newServerCert(ca, caKey, now); err != nil {
			return nil, err
		}
		if err := writePair(dir, serverFile, serverKeyFile, leaf, leafKey); err != nil {
			return nil, err
		}
	}
	return &PKI{
		CAPath: filepath.Join(dir, CAFile),
		CA:     ca,
		Certificate: tls.Certificate{
			Certificate: [][]byte{leaf.Raw},
			PrivateKey:  leafKey,
			Leaf:        leaf,
		},
	}, nil
}

// EnsureAdmin makes sure dir holds a client certificate for the
// development administrator, issued by the CA in dir (which Ensure made),
// issuing a new one when it is missing, nears expiry or no longer chains
// to the CA. It returns the certificate's and the key's paths.
func EnsureAdmin(dir string, now time.Time) (certPath, keyPath string, err error) {
	ca, caKey, err := loadPair(dir, CAFile, caKeyFile)
	if err != nil {
		return "", "", err
	}
	leaf, _, err := loadPair(dir, AdminCertFile, AdminKeyFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	if err != nil || needsRenewal(leaf, ca, now) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", fmt.Errorf("devpki: generate admin key: %w", err)
		}
		serial, err := randomSerial()
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial,
			Subject:      pkix.Name{CommonName: AdminName, Organization: []string{"mcpsts development"}},
			NotBefore:    now.Add(-time.Minute),
			NotAfter:     now.Add(serverLifetime),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		cert, key, err := sign(tmpl, ca, key, caKey)
		if err != nil {
			return "", "", err
		}
		if err := writePair(dir, AdminCertFile, AdminKeyFile, cert, key); err != nil {
			return "", "", err
		}
	}
	return filepath.Join(dir, AdminCertFile), filepath.Join(dir, AdminKeyFile), nil
}

// EnsureKEK returns the key-encryption key kept in dir, creating it (mode
// 0600) with generate when there is none.
func EnsureKEK(dir string, generate func() ([]byte, error)) ([]byte, error) {
	path := filepath.Join(dir, KEKFile)
	text, err := os.ReadFile(path)
	if err == nil {
		return text, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("devpki: %w", err)
	}
	if text, err = generate(); err != nil {
		return nil, err
	}
	if err := writeAtomic(path, text, 0o600); err != nil {
		return nil, err
	}
	return text, nil
}

func needsRenewal(leaf, ca *x509.Certificate, now time.Time) bool {
	return leaf.NotAfter.Sub(now) < renewBefore || now.Before(leaf.NotBefore) || leaf.CheckSignatureFrom(ca) != nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mcpsts development CA " + serial.Text(16)[:8], Organization: []string{"mcpsts"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		// Loopback only: this CA can vouch for nothing else.
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         []string{"localhost"},
		PermittedIPRanges: []*net.IPNet{
			{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)},
			{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
		},
	}
	return sign(tmpl, tmpl, key, key)
}

func newServerCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"mcpsts development"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	return sign(tmpl, ca, key, caKey)
}

func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: parse new certificate: %w", err)
	}
	return cert, key, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("devpki: serial number: %w", err)
	}
	return serial, nil
}

// loadPair reads a certificate and its ECDSA key. It returns an error
// wrapping fs.ErrNotExist only when both files are missing: a lone
// certificate or key is an error, never silently replaced.
func loadPair(dir, certName, keyName string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("devpki: %s: %w", certPath, fs.ErrNotExist)
	case certErr != nil:
		return nil, nil, fmt.Errorf("devpki: %v (remove %s to start afresh)", certErr, keyPath)
	case keyErr != nil:
		return nil, nil, fmt.Errorf("devpki: %v (remove %s to start afresh)", keyErr, certPath)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: %s and %s: %w", certPath, keyPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("devpki: %s: not an ECDSA key", keyPath)
	}
	return pair.Leaf, key, nil
}

func writePair(dir, certName, keyName string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("devpki: marshal key: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// writeAtomic replaces path with data: readers see the old file or the new
// one, never a part.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("devpki: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("devpki: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("devpki: close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("devpki: %w", err)
	}
	return nil
}
