// Package mdblocks reads the fenced code blocks of Markdown files, so that
// tests run the examples the documentation shows, as written.
package mdblocks

import (
	"fmt"
	"os"
	"strings"
)

// Block is one fenced code block.
type Block struct {
	File string
	Line int    // of its first line of code
	Lang string // the fence's info string: yaml, sh, json…
	Text string // its lines, each ending in a newline
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

// Read returns the fenced blocks of the Markdown file at path, in order.
// An unclosed fence is an error.
func Read(path string) ([]Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Block
	var cur *Block
	var fence string
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case cur == nil && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
			cur = &Block{File: path, Line: i + 2, Lang: strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1]))}
		case cur != nil && strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])) == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.Text += line + "\n"
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a fenced block is not closed", path, cur.Line-1)
	}
	return out, nil
}

// Of returns the blocks of lang.
func Of(blocks []Block, lang string) []Block {
	var out []Block
	for _, b := range blocks {
		if b.Lang == lang {
			out = append(out, b)
		}
	}
	return out
}
