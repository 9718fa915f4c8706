package awskms_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/mcpsts/mcpsts/internal/awsfake"
)

// fakeKMS is a loopback AWS KMS speaking the real wire protocol (JSON 1.1
// over HTTPS, SigV4-authenticated) for the two operations the backend
// uses. It checks every request's SigV4 signature by recomputing it with
// the SDK's signer, and signs with real P-256 keys.
type fakeKMS struct {
	srv    *httptest.Server
	creds  aws.Credentials
	region string

	mu    sync.Mutex
	keys  map[string]*ecdsa.PrivateKey // by key ID
	spec  map[string]string            // key spec override, by key ID
	evil  *ecdsa.PrivateKey            // when set, Sign signs with this key instead
	calls map[string]int
}

const fakeRegion = "eu-west-1"

func newFakeKMS(t *testing.T) *fakeKMS {
	t.Helper()
	f := &fakeKMS{
		creds:  aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "fake-secret-for-tests", Source: "test"},
		region: fakeRegion,
		keys:   map[string]*ecdsa.PrivateKey{},
		spec:   map[string]string{},
		calls:  map[string]int{},
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// addKey creates a key and returns its ARN.
func (f *fakeKMS) addKey(t *testing.T, id string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:kms:" + fakeRegion + ":111122223333:key/" + id
	f.mu.Lock()
	f.keys[arn] = k
	f.mu.Unlock()
	return arn
}

func (f *fakeKMS) fail(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

func (f *fakeKMS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		f.fail(w, 400, "SerializationException", "want a JSON 1.1 POST")
		return
	}
	if err := f.checkSigV4(r, body); err != "" {
		f.fail(w, 400, "InvalidSignatureException", err)
		return
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	f.mu.Lock()
	f.calls[op]++
	f.mu.Unlock()
	var in struct {
		KeyId            string
		Message          []byte
		MessageType      string
		SigningAlgorithm string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		f.fail(w, 400, "SerializationException", err.Error())
		return
	}
	f.mu.Lock()
	key, ok := f.keys[in.KeyId]
	spec := f.spec[in.KeyId]
	evil := f.evil
	f.mu.Unlock()
	if !ok {
		f.fail(w, 400, "NotFoundException", "Key '"+in.KeyId+"' does not exist")
		return
	}
	if spec == "" {
		spec = "ECC_NIST_P256"
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch op {
	case "GetPublicKey":
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		json.NewEncoder(w).Encode(map[string]any{
			"KeyId": in.KeyId, "PublicKey": der, "KeySpec": spec, "KeyUsage": "SIGN_VERIFY",
			"SigningAlgorithms": []string{"ECDSA_SHA_256"},
		})
	case "Sign":
		if in.MessageType != "DIGEST" || in.SigningAlgorithm != "ECDSA_SHA_256" || len(in.Message) != sha256.Size {
			f.fail(w, 400, "ValidationException", "want a SHA-256 DIGEST signed with ECDSA_SHA_256")
			return
		}
		if evil != nil {
			key = evil
		}
		sig, err := ecdsa.SignASN1(rand.Reader, key, in.Message)
		if err != nil {
			f.fail(w, 500, "KMSInternalException", err.Error())
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"KeyId": in.KeyId, "Signature": sig, "SigningAlgorithm": "ECDSA_SHA_256"})
	default:
		f.fail(w, 400, "UnknownOperationException", op)
	}
}

func (f *fakeKMS) checkSigV4(r *http.Request, body []byte) string {
	return awsfake.CheckSigV4(r, body, f.creds, "kms", f.region)
}
