package schemas

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Compile compiles schema files of this directory, given as file name → $id, and returns them
// by file name. Formats are asserted; nothing outside these files is ever loaded.
func Compile(files map[string]string) (map[string]*jsonschema.Schema, error) {
	refs := make([]string, 0, len(files))
	for _, url := range files {
		refs = append(refs, url)
	}
	byRef, err := CompileRefs(files, refs...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*jsonschema.Schema, len(files))
	for file, url := range files {
		out[file] = byRef[url]
	}
	return out, nil
}

// CompileRefs compiles schema files of this directory, given as file name → $id, and returns
// the schemas at refs, by ref: absolute URLs of a part of one of them, such as
// "https://confiture.dev/schemas/api.v1.json#/$defs/request" for a file whose definitions are
// each validated on its own.
func CompileRefs(files map[string]string, refs ...string) (map[string]*jsonschema.Schema, error) {
	c := newCompiler()
	c.AssertFormat()
	for file, url := range files {
		raw, err := FS.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
	}
	out := make(map[string]*jsonschema.Schema, len(refs))
	for _, ref := range refs {
		s, err := c.Compile(ref)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", ref, err)
		}
		out[ref] = s
	}
	return out, nil
}

// CompileDoc compiles a self-contained schema, such as a hook's parameter schema, under url.
// A $ref to anything outside the document is an error: a schema from a plugin manifest or a
// request must never make the worker read a file or fetch a URL.
func CompileDoc(url string, raw []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := newCompiler()
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	return c.Compile(url)
}

func newCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	return c
}

// noLoader refuses to load any resource that was not added to the compiler.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not available: schemas must be self-contained", url)
}
