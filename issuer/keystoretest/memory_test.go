package keystoretest

import (
	"testing"

	"github.com/mcpsts/mcpsts/issuer"
)

func TestMemoryConformance(t *testing.T) {
	Run(t, func(*testing.T) issuer.KeyStore { return NewMemory() })
}
