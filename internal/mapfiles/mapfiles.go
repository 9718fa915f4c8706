// Package mapfiles reads trust maps from files and directories: the file
// source of trustmaps.Policy.
package mapfiles

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mcpsts/mcpsts/trustmaps"
)

// Files is a trustmaps.Source over paths: each a file, or a directory whose
// *.yaml, *.yml and *.json files are read (not recursively).
type Files []string

var _ trustmaps.Source = Files(nil)

// maxFileSize bounds one map file.
const maxFileSize = 16 << 20

// Documents implements trustmaps.Source.
func (f Files) Documents(ctx context.Context) ([]trustmaps.Document, error) {
	var docs []trustmaps.Document
	for _, p := range f {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			files = files[:0]
			for _, e := range entries {
				ext := strings.ToLower(filepath.Ext(e.Name()))
				if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			slices.Sort(files)
		}
		for _, file := range files {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			fi, err := os.Stat(file)
			if err != nil {
				return nil, err
			}
			if fi.Size() > maxFileSize {
				return nil, fmt.Errorf("%s: larger than %d bytes", file, maxFileSize)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			docs = append(docs, trustmaps.Document{Name: file, Data: data})
		}
	}
	return docs, nil
}
