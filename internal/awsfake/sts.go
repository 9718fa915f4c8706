package awsfake

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// STS is a loopback AWS STS that answers sts:GetCallerIdentity, with the
// XML shape of AWS's documentation, after checking the request's real SigV4
// signature by creds for service sts in Region.
type STS struct {
	Creds  aws.Credentials
	Region string
	// Arn, UserID and Account are the caller it reports.
	Arn, UserID, Account string

	Calls atomic.Int64
}

func (s *STS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.Calls.Add(1)
	if why := CheckSigV4(r, nil, s.Creds, "sts", s.Region); why != "" {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>%s</Message></Error></ErrorResponse>", why)
		return
	}
	if r.URL.Query().Get("Action") != "GetCallerIdentity" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>%s</Arn>
    <UserId>%s</UserId>
    <Account>%s</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>c0ffee00-1234-4abc-8def-0123456789ab</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>`, s.Arn, s.UserID, s.Account)
}

// AssumedRole is the caller of AWS's documentation example.
func AssumedRole(creds aws.Credentials, region string) *STS {
	return &STS{Creds: creds, Region: region, Account: "111122223333",
		Arn:    "arn:aws:sts::111122223333:assumed-role/token-client-role/i-0fake0example00001",
		UserID: "AROAFAKEEXAMPLEROLEID:i-0fake0example00001"}
}
