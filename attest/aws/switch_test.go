package aws_test

import (
	"context"
	"testing"

	"github.com/mcpsts/mcpsts/attest"
	"github.com/mcpsts/mcpsts/attest/aws"
)

type fixedAttestor struct{ id attest.Identity }

func (f fixedAttestor) Attest(context.Context, attest.Evidence) (attest.Identity, error) {
	return f.id, nil
}

// TestSwitch: with no attestor in force AWS evidence is refused
// (aws_not_trusted); Set puts one in force, and Set(nil) takes it out.
func TestSwitch(t *testing.T) {
	var s aws.Switch
	if _, err := s.Attest(context.Background(), attest.Evidence{}); attest.ReasonOf(err) != "aws_not_trusted" {
		t.Fatalf("empty switch: %v", err)
	}
	s.Set(fixedAttestor{attest.Identity{Provider: "aws", Subject: "arn:aws:iam::111122223333:role/r"}})
	if id, err := s.Attest(context.Background(), attest.Evidence{}); err != nil || id.Subject != "arn:aws:iam::111122223333:role/r" {
		t.Fatalf("after Set: %+v, %v", id, err)
	}
	s.Set(nil)
	if _, err := s.Attest(context.Background(), attest.Evidence{}); attest.ReasonOf(err) != "aws_not_trusted" {
		t.Fatalf("after Set(nil): %v", err)
	}
}
