package mdblocks_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpsts/mcpsts/internal/mdblocks"
)

func TestRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	os.WriteFile(path, []byte("# T\n\n```yaml\na: 1\n```\n\ntext\n\n  ```sh\n  echo ```x\n  ```\n~~~\nraw\n~~~\n"), 0o600)
	bs, err := mdblocks.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 || bs[0].Lang != "yaml" || bs[0].Text != "a: 1\n" || bs[0].Line != 4 ||
		bs[1].Lang != "sh" || bs[1].Text != "  echo ```x\n" || bs[2].Lang != "" || bs[2].Text != "raw\n" {
		t.Fatalf("%+v", bs)
	}
	if y := mdblocks.Of(bs, "yaml"); len(y) != 1 || y[0].String() != path+":4" {
		t.Fatalf("%+v", y)
	}
	os.WriteFile(path, []byte("```yaml\na: 1\n"), 0o600)
	if _, err := mdblocks.Read(path); err == nil {
		t.Fatal("an unclosed fence read")
	}
}
