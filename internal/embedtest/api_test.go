package embedtest

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/jobrelay/jobrelay"

// listed is what `go list -json` says of a package.
type listed struct {
	ImportPath string   `json:"ImportPath"`
	Name       string   `json:"Name"`
	Dir        string   `json:"Dir"`
	Export     string   `json:"Export"`
	GoFiles    []string `json:"GoFiles"`
}

// goList runs `go list -json` with args and decodes its stream of packages.
func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func isInternal(path string) bool {
	return strings.HasSuffix(path, "/internal") || strings.Contains(path, "/internal/")
}

// publicPackages are the module's importable packages outside internal/.
func publicPackages(t *testing.T) []listed {
	t.Helper()
	var out []listed
	for _, p := range goList(t, module+"/...") {
		if p.Name != "main" && !isInternal(p.ImportPath) && len(p.GoFiles) > 0 {
			out = append(out, p)
		}
	}
	require.NotEmpty(t, out)
	return out
}

// exportImporter imports packages from the compiler's export data, which
// `go list -export` builds (or finds in the build cache): fast, and no
// dependency beyond the standard library.
func exportImporter(t *testing.T, fset *token.FileSet, paths ...string) types.Importer {
	t.Helper()
	exports := map[string]string{}
	for _, p := range goList(t, append([]string{"-export", "-deps"}, paths...)...) {
		exports[p.ImportPath] = p.Export
	}
	return importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, os.ErrNotExist
		}
		return os.Open(f)
	})
}

// leaks lists the exported identifiers of pkg whose types, or the types
// reachable through their exported fields and methods, come from an
// internal package: names a program outside the module could not fill in
// or spell.
func leaks(pkg *types.Package) []string {
	w := &walker{seen: map[*types.TypeName]bool{}}
	for _, name := range pkg.Scope().Names() {
		obj := pkg.Scope().Lookup(name)
		if obj.Exported() {
			w.check(obj.Type(), pkg.Name()+"."+name)
		}
	}
	return w.leaks
}

type walker struct {
	seen  map[*types.TypeName]bool
	leaks []string
}

func (w *walker) check(t types.Type, where string) {
	switch t := t.(type) {
	case *types.Alias:
		if obj := t.Obj(); obj.Pkg() != nil && isInternal(obj.Pkg().Path()) {
			w.leaks = append(w.leaks, where+": "+t.String())
			return
		}
		w.check(types.Unalias(t), where)
	case *types.Named:
		obj := t.Obj()
		if obj.Pkg() != nil && isInternal(obj.Pkg().Path()) {
			w.leaks = append(w.leaks, where+": "+t.String())
			return
		}
		for targ := range t.TypeArgs().Types() {
			w.check(targ, where)
		}
		// Types of other modules are theirs to keep public; the module's
		// own are walked once, exported fields and methods included.
		if obj.Pkg() == nil || !strings.HasPrefix(obj.Pkg().Path(), module) || w.seen[obj] {
			return
		}
		w.seen[obj] = true
		name := obj.Pkg().Name() + "." + obj.Name()
		w.check(t.Underlying(), name)
		ms := types.NewMethodSet(types.NewPointer(t))
		for sel := range ms.Methods() {
			if sel.Obj().Exported() {
				w.check(sel.Type(), name+"."+sel.Obj().Name())
			}
		}
	case *types.Pointer:
		w.check(t.Elem(), where)
	case *types.Slice:
		w.check(t.Elem(), where)
	case *types.Array:
		w.check(t.Elem(), where)
	case *types.Chan:
		w.check(t.Elem(), where)
	case *types.Map:
		w.check(t.Key(), where)
		w.check(t.Elem(), where)
	case *types.Signature:
		for v := range t.Params().Variables() {
			w.check(v.Type(), where)
		}
		for v := range t.Results().Variables() {
			w.check(v.Type(), where)
		}
	case *types.Struct:
		for f := range t.Fields() {
			// Embedded fields count even unexported: their exported
			// fields and methods are promoted.
			if f.Exported() || f.Embedded() {
				w.check(f.Type(), where+"."+f.Name())
			}
		}
	case *types.Interface:
		for m := range t.Methods() {
			if m.Exported() {
				w.check(m.Type(), where+"."+m.Name())
			}
		}
	case *types.TypeParam:
		w.check(t.Constraint(), where)
	}
}

func TestNoExportedIdentifierHasAnInternalType(t *testing.T) {
	t.Parallel()
	pkgs := publicPackages(t)
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p.ImportPath)
	}
	require.Subset(t, paths, []string{module + "/relay", module + "/consumer", module + "/db", module + "/inspect"})
	imp := exportImporter(t, token.NewFileSet(), paths...)
	for _, path := range paths {
		pkg, err := imp.Import(path)
		require.NoError(t, err)
		require.Empty(t, leaks(pkg), "exported identifiers of %s with types from internal/", path)
	}
}

// TestLeaksFindsAnInternalType shows that the walk above would catch the
// leak it was written for: relay.Config.Metrics was a *metrics.Relay.
func TestLeaksFindsAnInternalType(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	src := `package fake

import "github.com/jobrelay/jobrelay/internal/metrics"

type Config struct{ Metrics *metrics.Relay }
type hidden struct{ M map[string][]*metrics.Consumer }
type Relay struct{ hidden }
func New(c Config) (*Relay, error) { return nil, nil }
func (r *Relay) Stats() []metrics.Relay { return nil }
`
	f, err := parser.ParseFile(fset, "fake.go", src, 0)
	require.NoError(t, err)
	conf := types.Config{Importer: exportImporter(t, fset, module+"/internal/metrics")}
	pkg, err := conf.Check(module+"/fake", fset, []*ast.File{f}, nil)
	require.NoError(t, err)
	got := leaks(pkg)
	require.Contains(t, got, "fake.Config.Metrics: "+module+"/internal/metrics.Relay")
	require.Contains(t, got, "fake.hidden.M: "+module+"/internal/metrics.Consumer")
	require.Contains(t, got, "fake.Relay.Stats: "+module+"/internal/metrics.Relay")
}

// TestExamplesBuildAPipelineWithPublicPackagesOnly: the examples of New
// and of an embedded pipeline import no internal package but testenv,
// which gives them a schema and a stream of their own.
func TestExamplesBuildAPipelineWithPublicPackagesOnly(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	for _, p := range goList(t, module+"/relay", module+"/consumer") {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, "example_test.go"), nil, parser.ImportsOnly)
		require.NoError(t, err)
		var imports []string
		for _, spec := range f.Imports {
			path, err := strconv.Unquote(spec.Path.Value)
			require.NoError(t, err)
			imports = append(imports, path)
			if isInternal(path) {
				require.Equal(t, module+"/internal/testenv", path, "%s/example_test.go", p.ImportPath)
			}
		}
		require.True(t, slices.Contains(imports, p.ImportPath), "%s's example uses the package itself", p.ImportPath)
	}
}
