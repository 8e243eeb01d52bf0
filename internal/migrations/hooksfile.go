package migrations

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/suggest"
)

// Limits of a hooks file. The hooks per migration are the request's (contract.
// MaxHooksPerMigration); the YAML ones keep a hostile file (deep nesting, alias bombs) from
// costing more than a moment.
const (
	maxHooksFileBytes = 1 << 20
	minPriority       = -1_000_000
	maxPriority       = 1_000_000
	maxYAMLDepth      = 64
	maxYAMLNodes      = 100_000
	// maxYAMLText bounds the text of the decoded strings (keys included), counting what
	// aliases expand to: a 500 KiB string aliased a thousand times is a few nodes but half a
	// gigabyte of request. A file without aliases never reaches it.
	maxYAMLText = maxHooksFileBytes
)

var (
	hookTypeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
	hookNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// hugeIntegerRE matches the integers beyond 64 bits, which the parser leaves as strings.
	hugeIntegerRE = regexp.MustCompile(`^[-+]?[0-9]{19,}$`)

	// hookPhases are the phases a hooks file may declare: every phase but ddl.
	hookPhases = slices.DeleteFunc(slices.Clone(contract.Phases), func(p string) bool { return p == contract.PhaseDDL })

	hookKeys = []string{"name", "hook", "params", "priority", "depends_on"}
)

// hooksParser turns one hooks file into hook declarations, collecting problems with their lines.
type hooksParser struct {
	file     string
	problems []Problem
	// targets maps each alias to the value of its anchor, nil when it has none (see aliasLinker).
	targets map[*ast.AliasNode]ast.Node
	// open holds the anchored nodes being decoded, to catch an alias inside its own anchor.
	open     map[ast.Node]bool
	nodes    int  // nodes decoded so far, alias expansions included
	overflow bool // nodes passed maxYAMLNodes, or text maxYAMLText (reported once)
	text     int  // bytes of strings decoded so far, alias expansions included
	// expanding is the outermost alias being decoded: where an overflow is reported, as the
	// node that overflows is somewhere in an anchor.
	expanding ast.Node
}

// entry is one hook declaration with what the cross-checks need to report it.
type entry struct {
	spec      contract.HookSpec
	line      int
	nameLine  int
	defaulted bool // name defaulted to the hook type
	deps      []dep
}

type dep struct {
	name string
	line int
}

// parseHooks parses the hooks file named file (for messages) holding data. The hooks are in
// declaration order; they are meaningful only when there are no problems.
func parseHooks(file string, data []byte) ([]contract.HookSpec, []Problem) {
	p := newHooksParser(file)
	body := p.document(data, "a hooks file")
	if body == nil {
		return nil, p.problems // an empty file, or only comments: no hooks
	}
	entries := p.topLevel(body)
	p.crossCheck(entries)
	var hooks []contract.HookSpec
	for _, e := range entries {
		hooks = append(hooks, e.spec)
	}
	return hooks, p.problems
}

func newHooksParser(file string) *hooksParser {
	return &hooksParser{file: file, targets: map[*ast.AliasNode]ast.Node{}, open: map[ast.Node]bool{}}
}

// document parses data, a YAML file of a single document (what is "a hooks file", for
// messages), and returns its body with its aliases linked, or nil when it has none or after
// reporting why it cannot be read.
func (p *hooksParser) document(data []byte, what string) ast.Node {
	if i := invalidUTF8(data); i >= 0 {
		p.addLine(lineAt(data, i), "is not valid UTF-8")
		return nil
	}
	// The YAML parser takes time and memory quadratic in the nesting of flow collections: a
	// 20 KB file of '[' costs it 2 seconds and 600 MB. Refuse such a file before parsing it.
	if i := flowNesting(data); i >= 0 {
		p.addLine(lineAt(data, i), "nested more than %d levels deep ('[' and '{' without their closing bracket)", maxFlowNesting)
		return nil
	}
	// So do block sequences opened on one line ("- - - x"): a 1 MB line of them took 24 GB.
	if i := dashNesting(data); i >= 0 {
		p.addLine(lineAt(data, i), "nested more than %d levels deep (\"- \" repeated on one line)", maxLineDashes)
		return nil
	}
	// YAML allows a byte order mark, which the parser does not; it is not part of any line.
	f, line, err := parseYAML(bytes.TrimPrefix(data, []byte("\ufeff")))
	if err != nil {
		p.addLine(line, "invalid YAML: %s", err)
		return nil
	}
	var bodies []ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			if _, comment := d.Body.(*ast.CommentGroupNode); !comment {
				bodies = append(bodies, d.Body)
			}
		}
	}
	if len(bodies) == 0 {
		return nil
	}
	if len(bodies) > 1 {
		p.add(bodies[1], "%s holds one YAML document, this one holds %d: remove the extra \"---\"", what, len(bodies))
	}
	ast.Walk(aliasLinker{anchors: map[string]ast.Node{}, targets: p.targets}, bodies[0])
	return bodies[0]
}

// maxFlowNesting bounds the raw nesting of '[' and '{' in a hooks file, and maxLineDashes the
// "- " on a line, counted without parsing (those in strings and comments count too, so they are
// far above maxYAMLDepth).
const (
	maxFlowNesting = 1000
	maxLineDashes  = 4 * maxYAMLDepth
)

// flowNesting returns the offset of the first '[' or '{' nested deeper than maxFlowNesting,
// or -1.
func flowNesting(data []byte) int {
	depth := 0
	for i, c := range data {
		switch c {
		case '[', '{':
			depth++
			if depth > maxFlowNesting {
				return i
			}
		case ']', '}':
			depth = max(depth-1, 0)
		}
	}
	return -1
}

// dashNesting returns the offset of the first "- " beyond maxLineDashes on one line, or -1.
// It counts those after a blank, as "- " starts a block sequence there: "- - - x", or "!!seq -
// !!seq - x"; nesting by indentation costs a column a level, so a hooks file cannot afford much.
func dashNesting(data []byte) int {
	depth := 0
	for i, c := range data {
		switch {
		case c == '\n':
			depth = 0
		case c == '-' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t' || data[i-1] == '\n') && i+1 < len(data) && data[i+1] == ' ':
			if depth++; depth > maxLineDashes {
				return i
			}
		}
	}
	return -1
}

// parseYAML parses data, turning a parser error (or panic) into an error and its line.
func parseYAML(data []byte) (f *ast.File, line int, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, line, err = nil, 0, fmt.Errorf("the YAML parser failed: %v", r)
		}
	}()
	f, err = parser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			return nil, tokenLine(ye.GetToken()), errors.New(ye.GetMessage())
		}
		msg, _, _ := strings.Cut(err.Error(), "\n")
		return nil, 0, errors.New(msg)
	}
	if f == nil {
		return nil, 0, errors.New("the YAML parser returned nothing")
	}
	return f, 0, nil
}

func (p *hooksParser) add(n ast.Node, format string, args ...any) {
	p.addLine(nodeLine(n), format, args...)
}

func (p *hooksParser) addLine(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func nodeLine(n ast.Node) int {
	if n == nil {
		return 0
	}
	return tokenLine(n.GetToken())
}

func tokenLine(tk *token.Token) int {
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

// topLevel reads the phase -> list of hooks mapping.
func (p *hooksParser) topLevel(body ast.Node) []*entry {
	top := p.resolve(body)
	if top == nil {
		return nil
	}
	m, ok := top.(ast.MapNode)
	if !ok {
		p.add(body, "the top level must be a mapping of phase -> list of hooks (for example \"after_ddl:\" followed by \"  - hook: sql\"), found %s", describe(top))
		return nil
	}
	var entries []*entry
	for _, pr := range p.pairs(m, 0) {
		phase := pr.key
		if phase == contract.PhaseDDL {
			p.add(pr.keyNode, "ddl is the migration's own SQL; hooks go in before_ddl/after_ddl")
			continue
		}
		if !slices.Contains(hookPhases, phase) {
			p.add(pr.keyNode, "unknown phase %s; valid phases: %s%s", quote(phase), strings.Join(hookPhases, ", "), didYouMean(phase, hookPhases))
			continue
		}
		list := p.resolve(pr.value)
		switch l := list.(type) {
		case nil, *ast.NullNode: // nothing declared in this phase
		case *ast.SequenceNode:
			for _, el := range l.Values {
				if len(entries) == contract.MaxHooksPerMigration {
					p.add(el, "more than %d hooks in one migration; a request allows at most %d", contract.MaxHooksPerMigration, contract.MaxHooksPerMigration)
					return entries
				}
				if e := p.entry(phase, el); e != nil {
					entries = append(entries, e)
				}
			}
		default:
			hint := ""
			if _, isMap := list.(ast.MapNode); isMap {
				hint = " (start each hook with \"- \")"
			}
			p.add(pr.value, "%s must be a list of hooks%s, found %s", phase, hint, describe(list))
		}
	}
	return entries
}

// entry reads one hook declaration. It returns nil when there is nothing to cross-check.
func (p *hooksParser) entry(phase string, n ast.Node) *entry {
	r := p.resolve(n)
	if r == nil {
		return nil
	}
	m, ok := r.(ast.MapNode)
	if !ok {
		if s, isString := r.(*ast.StringNode); isString {
			p.add(n, "a hook entry must be a mapping, found the string %s; to declare a hook of that type write \"- hook: %s\"", quote(s.Value), s.Value)
		} else {
			p.add(n, "a hook entry must be a mapping with at least a \"hook\" key, found %s", describe(r))
		}
		return nil
	}
	e := &entry{spec: contract.HookSpec{Phase: phase}, line: nodeLine(n)}
	hasHook, hasName := false, false
	for _, pr := range p.pairs(m, 1) {
		switch pr.key {
		case "hook":
			hasHook = true
			if s, ok := p.str(pr.value, "hook"); ok {
				if hookTypeRE.MatchString(s) {
					e.spec.Hook = s
				} else {
					p.add(pr.value, "hook %s is not a hook type: 1 to 64 lower-case letters, digits, '_', '.' or '-', starting with a letter or digit", quote(s))
				}
			}
		case "name":
			hasName = true
			e.nameLine = nodeLine(pr.value)
			if s, ok := p.str(pr.value, "name"); ok {
				if hookNameRE.MatchString(s) {
					e.spec.Name = s
				} else {
					p.add(pr.value, "name %s is not a hook name: 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", quote(s))
				}
			}
		case "params":
			e.spec.Params = p.params(pr.value)
		case "priority":
			e.spec.Priority = p.priority(pr.value)
		case "depends_on":
			e.deps = p.dependsOn(pr.value)
			for _, d := range e.deps {
				e.spec.DependsOn = append(e.spec.DependsOn, d.name)
			}
		default:
			p.add(pr.keyNode, "unknown key %s in a hook entry; valid keys: %s%s", quote(pr.key), strings.Join(hookKeys, ", "), didYouMean(pr.key, hookKeys))
		}
	}
	if !hasHook {
		p.add(n, "hook entry has no \"hook\" key: add the registered hook type, for example \"hook: sql\"")
	}
	if !hasName && e.spec.Hook != "" {
		e.spec.Name = e.spec.Hook
		e.nameLine = e.line
		e.defaulted = true
	}
	return e
}

func (p *hooksParser) params(n ast.Node) map[string]any {
	switch r := p.resolve(n).(type) {
	case nil, *ast.NullNode:
		return nil
	default:
		if _, ok := r.(ast.MapNode); !ok {
			p.add(n, "params must be a mapping of parameter names to values, found %s", describe(r))
			return nil
		}
	}
	v, ok := p.value(n, 1)
	if !ok {
		return nil
	}
	m, _ := v.(map[string]any)
	if jsonDepth(m) > contract.MaxParamsDepth {
		p.add(n, "params nest more than %d levels deep, the most a request allows", contract.MaxParamsDepth)
		return nil
	}
	return m
}

// jsonDepth returns how deep a decoded value nests, as contract.CheckRequest counts: a mapping
// or a list is one level more than its deepest element, a scalar none. value bounds the recursion.
func jsonDepth(v any) int {
	var elems []any
	switch t := v.(type) {
	case map[string]any:
		elems = slices.Collect(maps.Values(t))
	case []any:
		elems = t
	default:
		return 0
	}
	deepest := 0
	for _, e := range elems {
		deepest = max(deepest, jsonDepth(e))
	}
	return deepest + 1
}

func (p *hooksParser) priority(n ast.Node) int {
	v, ok := p.value(n, 1)
	if !ok {
		return 0
	}
	switch i := v.(type) {
	case int64:
		if i >= minPriority && i <= maxPriority {
			return int(i)
		}
	case uint64: // beyond int64, so out of range
	case string:
		if !hugeIntegerRE.MatchString(i) {
			p.add(n, "priority must be an integer, found %s", describeValue(v))
			return 0
		}
	default:
		p.add(n, "priority must be an integer, found %s", describeValue(v))
		return 0
	}
	p.add(n, "priority %v is out of range: it must be between %d and %d", v, minPriority, maxPriority)
	return 0
}

// dependsOn reads a list of hook names, or a single one.
func (p *hooksParser) dependsOn(n ast.Node) []dep {
	var items []ast.Node
	switch r := p.resolve(n).(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.SequenceNode:
		items = r.Values
	default:
		if _, isMap := r.(ast.MapNode); isMap {
			p.add(n, "depends_on must be a list of hook names, found %s", describe(r))
			return nil
		}
		items = []ast.Node{n}
	}
	var deps []dep
	for _, it := range items {
		name, ok := p.str(it, "depends_on entry")
		if !ok {
			continue
		}
		if slices.ContainsFunc(deps, func(d dep) bool { return d.name == name }) {
			p.add(it, "depends_on lists %s twice", quote(name))
			continue
		}
		deps = append(deps, dep{name: name, line: nodeLine(it)})
	}
	return deps
}

// str decodes a node that must hold a string.
func (p *hooksParser) str(n ast.Node, what string) (string, bool) {
	v, ok := p.value(n, 1)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		hint := ""
		switch v.(type) {
		case int64, uint64, float64, bool:
			hint = " (quote it to make it a string)"
		}
		p.add(n, "%s must be a string, found %s%s", what, describeValue(v), hint)
		return "", false
	}
	return s, true
}

// crossCheck checks names and dependencies within each phase.
func (p *hooksParser) crossCheck(entries []*entry) {
	phaseOf := map[string][]string{} // hook name -> phases that declare it
	for _, e := range entries {
		if e.spec.Name != "" && !slices.Contains(phaseOf[e.spec.Name], e.spec.Phase) {
			phaseOf[e.spec.Name] = append(phaseOf[e.spec.Name], e.spec.Phase)
		}
	}
	for _, phase := range hookPhases {
		byName := map[string]*entry{}
		var names []string
		for _, e := range entries {
			if e.spec.Phase != phase || e.spec.Name == "" {
				continue
			}
			first, dup := byName[e.spec.Name]
			if !dup {
				byName[e.spec.Name] = e
				names = append(names, e.spec.Name)
				continue
			}
			hint := ""
			if e.defaulted || first.defaulted {
				hint = "; a hook's name defaults to its hook type, so set \"name\" to tell them apart"
			}
			p.addLine(e.nameLine, "duplicate hook name %s in %s (first declared at line %d)%s", quote(e.spec.Name), phase, first.nameLine, hint)
		}
		depsOK := true
		for _, e := range entries {
			if e.spec.Phase != phase {
				continue
			}
			for _, d := range e.deps {
				switch {
				case d.name == e.spec.Name:
					p.addLine(d.line, "hook %s depends on itself", quote(e.spec.Name))
					depsOK = false
				case byName[d.name] == nil:
					hint := didYouMean(d.name, names)
					if others := phaseOf[d.name]; len(others) > 0 {
						hint = fmt.Sprintf(" (it is declared in %s; depends_on only links hooks of the same phase)", strings.Join(others, ", "))
					}
					p.addLine(d.line, "hook %s depends on %s, which is not a hook of %s in this migration%s", quote(e.spec.Name), quote(d.name), phase, hint)
					depsOK = false
				}
			}
		}
		if depsOK {
			p.checkCycle(names, byName)
		}
	}
}

// checkCycle reports one dependency cycle among the hooks of a phase, if there is one, at the
// depends_on entry that closes it.
func (p *hooksParser) checkCycle(names []string, byName map[string]*entry) {
	deps := make(map[string][]string, len(names))
	for _, name := range names {
		for _, d := range byName[name].deps {
			deps[name] = append(deps[name], d.name)
		}
	}
	cycle := contract.FindCycle(names, deps)
	if cycle == nil {
		return
	}
	quoted := make([]string, 0, len(cycle))
	for _, c := range cycle {
		quoted = append(quoted, quote(c))
	}
	from, to := cycle[len(cycle)-2], cycle[len(cycle)-1]
	for _, d := range byName[from].deps {
		if d.name == to {
			p.addLine(d.line, "depends_on forms a cycle: %s", strings.Join(quoted, " -> "))
			return
		}
	}
}

// aliasLinker maps each alias to the value of the last anchor of its name before it, as YAML
// says: ast.Walk visits the nodes in document order. (The parser leaves aliases unlinked; the
// library's decoder links them while decoding, without the budgets below.)
type aliasLinker struct {
	anchors map[string]ast.Node
	targets map[*ast.AliasNode]ast.Node
}

func (l aliasLinker) Visit(n ast.Node) ast.Visitor {
	switch v := n.(type) {
	case *ast.AnchorNode:
		l.anchors[tokenText(v.Name)] = v.Value
	case *ast.AliasNode:
		l.targets[v] = l.anchors[tokenText(v.Value)]
	}
	return l
}

// step counts a decoded node; it returns false once the file has too many.
func (p *hooksParser) step(n ast.Node) bool {
	p.nodes++
	if p.nodes <= maxYAMLNodes {
		return true
	}
	if !p.overflow {
		p.overflow = true
		if p.expanding != nil {
			n = p.expanding
		}
		p.add(n, "too many YAML nodes (more than %d, counting what aliases expand to)", maxYAMLNodes)
	}
	return false
}

// spend counts size bytes of decoded text; it returns false once the file has too much.
func (p *hooksParser) spend(n ast.Node, size int) bool {
	p.text += size
	if p.text <= maxYAMLText {
		return true
	}
	if !p.overflow {
		p.overflow = true
		if p.expanding != nil {
			n = p.expanding
		}
		p.add(n, "too much text (more than %d bytes of strings, counting what aliases expand to)", maxYAMLText)
	}
	return false
}

// alias returns the node an alias stands for, or nil after reporting why there is none.
func (p *hooksParser) alias(a *ast.AliasNode) ast.Node {
	target := p.targets[a]
	if target == nil {
		name := tokenText(a.Value)
		p.add(a, "alias *%s refers to no anchor &%s defined before it", name, name)
		return nil
	}
	if !p.step(a) {
		return nil
	}
	return target
}

// resolve follows anchors, aliases and the !!map and !!seq tags to the node they stand for. It
// returns nil after reporting a problem.
func (p *hooksParser) resolve(n ast.Node) ast.Node {
	for range maxYAMLDepth {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			if n = p.alias(v); n == nil {
				return nil
			}
		case *ast.TagNode:
			if t := tagOf(v); t != "!!map" && t != "!!seq" {
				return n
			}
			n = v.Value
		default:
			return n
		}
	}
	p.add(n, "nested more than %d levels deep", maxYAMLDepth)
	return nil
}

type pair struct {
	key     string
	keyNode ast.Node
	value   ast.Node
}

// pairs returns the entries of a mapping with string keys, merge keys ("<<") expanded: the
// mapping's own keys win over merged ones, and earlier merged mappings over later ones. (The
// library's decoder lets a merged key override the mapping's own, and a later merged mapping an
// earlier one, against the YAML merge key spec: see TestHooksFileYAMLUnlikeTheLibrary.)
func (p *hooksParser) pairs(m ast.MapNode, depth int) []pair {
	var own, merged []pair
	seen := map[string]ast.Node{}
	for it := m.MapRange(); it.Next(); {
		mv := it.KeyValue()
		if mv == nil || mv.Key == nil {
			continue
		}
		if depth > maxYAMLDepth {
			p.add(mv, "nested more than %d levels deep", maxYAMLDepth)
			return nil
		}
		if mv.Key.IsMergeKey() {
			merged = append(merged, p.merge(mv.Value, depth+1)...)
			continue
		}
		key, ok := p.key(mv.Key, depth+1)
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			p.add(mv.Key, "key %s appears twice in this mapping (first at line %d)", quote(key), nodeLine(first))
			continue
		}
		seen[key] = mv.Key
		own = append(own, pair{key: key, keyNode: mv.Key, value: mv.Value})
	}
	for _, pr := range merged {
		if _, dup := seen[pr.key]; !dup {
			seen[pr.key] = pr.keyNode
			own = append(own, pr)
		}
	}
	return own
}

// merge returns the entries a merge key brings in: a mapping's, or those of a list of mappings.
func (p *hooksParser) merge(n ast.Node, depth int) []pair {
	r := p.resolve(n)
	if r == nil {
		return nil
	}
	if m, ok := r.(ast.MapNode); ok {
		return p.pairs(m, depth)
	}
	seq, ok := r.(*ast.SequenceNode)
	if !ok {
		p.add(n, "<< must merge a mapping or a list of mappings, found %s", describe(r))
		return nil
	}
	var out []pair
	for _, el := range seq.Values {
		er := p.resolve(el)
		m, ok := er.(ast.MapNode)
		if !ok {
			if er != nil {
				p.add(el, "<< must merge a mapping or a list of mappings, found a list holding %s", describe(er))
			}
			continue
		}
		out = append(out, p.pairs(m, depth)...)
	}
	return out
}

// key returns a mapping key as a string. Keys that are other scalars take their decoded value's
// text, as JSON object keys must be strings.
func (p *hooksParser) key(n ast.Node, depth int) (string, bool) {
	if mk, ok := n.(*ast.MappingKeyNode); ok {
		return p.key(mk.Value, depth+1)
	}
	v, ok := p.value(n, depth)
	if !ok {
		return "", false
	}
	switch k := v.(type) {
	case string:
		return k, true
	case nil:
		return "null", true
	case bool, int64, uint64, float64:
		return fmt.Sprint(k), true
	}
	p.add(n, "a mapping key must be a string, found %s", describeValue(v))
	return "", false
}

// value decodes a node into plain Go values that encoding/json round-trips: map[string]any,
// []any, string, int64 (uint64 only above math.MaxInt64), float64, bool and nil. (yaml.NodeToValue
// has no budget: it returns an alias bomb as shared values, which encoding/json expands to
// gigabytes; and it turns a recursive alias into nil and .inf into +Inf.)
func (p *hooksParser) value(n ast.Node, depth int) (any, bool) {
	if depth > maxYAMLDepth {
		p.add(n, "nested more than %d levels deep", maxYAMLDepth)
		return nil, false
	}
	if !p.step(n) {
		return nil, false
	}
	switch v := n.(type) {
	case nil:
		return nil, true
	case *ast.NullNode, *ast.BoolNode, *ast.FloatNode:
		return v.(ast.ScalarNode).GetValue(), true
	case *ast.StringNode:
		return v.Value, p.spend(n, len(v.Value))
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, p.spend(n, len(v.Value.Value))
	case *ast.IntegerNode:
		switch i := v.Value.(type) {
		case int64:
			return i, true
		case uint64:
			if i <= math.MaxInt64 {
				return int64(i), true
			}
			return i, true
		}
		p.add(n, "cannot read the integer %s", quote(tokenText(n)))
		return nil, false
	case *ast.InfinityNode, *ast.NanNode:
		p.add(n, "%s is not a number JSON can carry", quote(tokenText(n)))
		return nil, false
	case ast.MapNode:
		pairs := p.pairs(v, depth+1)
		m := make(map[string]any, len(pairs))
		ok := true
		for _, pr := range pairs {
			val, valOK := p.value(pr.value, depth+1)
			m[pr.key] = val
			ok = ok && valOK
		}
		return m, ok
	case *ast.SequenceNode:
		list := make([]any, 0, len(v.Values))
		ok := true
		for _, el := range v.Values {
			val, valOK := p.value(el, depth+1)
			list = append(list, val)
			ok = ok && valOK
		}
		return list, ok
	case *ast.AnchorNode:
		return p.anchored(v.Value, depth)
	case *ast.AliasNode:
		target := p.alias(v)
		if target == nil {
			return nil, false
		}
		if p.open[target] {
			p.add(n, "alias *%s is inside its own anchor: a recursive structure cannot be a parameter", tokenText(v.Value))
			return nil, false
		}
		if p.expanding == nil {
			p.expanding = v
			defer func() { p.expanding = nil }()
		}
		return p.anchored(target, depth)
	case *ast.TagNode:
		return p.tagged(v, depth)
	}
	p.add(n, "unsupported YAML: %s", n.Type())
	return nil, false
}

// anchored decodes an anchored node, marking it open meanwhile.
func (p *hooksParser) anchored(n ast.Node, depth int) (any, bool) {
	if n == nil {
		return nil, true // "&a" with nothing after it
	}
	p.open[n] = true
	defer delete(p.open, n)
	return p.value(n, depth+1)
}

// tagged decodes a node with one of the standard tags; any other tag is a problem, not a guess.
// (The library's decoder reads "!!int ten" as 0 and "!!str 0x10" as "16", and ignores other tags.)
func (p *hooksParser) tagged(t *ast.TagNode, depth int) (any, bool) {
	tag := tagOf(t)
	if tag == "!!str" {
		r := p.resolve(t.Value)
		switch s := r.(type) {
		case nil:
			return nil, false
		case *ast.NullNode:
			return "", true
		case *ast.StringNode, *ast.LiteralNode:
			return p.value(s, depth+1)
		case ast.ScalarNode: // 123, true, 1.5: their text as written
			return tokenText(s), true
		}
		p.add(t, "!!str applies to a scalar, found %s", describe(r))
		return nil, false
	}
	if tag != "!!int" && tag != "!!float" && tag != "!!bool" && tag != "!!null" && tag != "!!map" && tag != "!!seq" {
		p.add(t, "unsupported YAML tag %s; use plain YAML values or the tags !!str, !!int, !!float, !!bool, !!null, !!map and !!seq", quote(tag))
		return nil, false
	}
	v, ok := p.value(t.Value, depth+1)
	if !ok {
		return nil, false
	}
	s, isString := v.(string)
	switch tag {
	case "!!null":
		return nil, true
	case "!!int":
		switch v.(type) {
		case int64, uint64:
			return v, true
		}
		if isString {
			if i, err := strconv.ParseInt(s, 0, 64); err == nil {
				return i, true
			}
		}
	case "!!float":
		var f float64
		var err error
		switch x := v.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
		case uint64:
			f = float64(x)
		case string:
			f, err = strconv.ParseFloat(s, 64)
		default:
			err = errors.New("not a number")
		}
		if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f, true
		}
	case "!!bool":
		if _, isBool := v.(bool); isBool {
			return v, true
		}
		if b, err := strconv.ParseBool(s); isString && err == nil {
			return b, true
		}
	case "!!map":
		if _, isMap := v.(map[string]any); isMap {
			return v, true
		}
	case "!!seq":
		if _, isList := v.([]any); isList {
			return v, true
		}
	}
	p.add(t, "%s is not a valid %s", describeValue(v), tag)
	return nil, false
}

// tagOf returns a tag in its short form: "!!str" for "!!str" and "!<tag:yaml.org,2002:str>".
func tagOf(t *ast.TagNode) string {
	if t.Start == nil {
		return ""
	}
	tag := t.Start.Value
	if rest, ok := strings.CutPrefix(tag, "!<tag:yaml.org,2002:"); ok && strings.HasSuffix(rest, ">") {
		return "!!" + strings.TrimSuffix(rest, ">")
	}
	if t.Directive != nil { // %TAG can rename "!!"; such a file gets no guesses
		return "%TAG " + tag
	}
	return tag
}

func tokenText(n ast.Node) string {
	if n == nil || n.GetToken() == nil {
		return ""
	}
	return n.GetToken().Value
}

// describe names the kind of a resolved node for messages.
func describe(n ast.Node) string {
	switch n.(type) {
	case ast.MapNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode, nil:
		return "null"
	case *ast.TagNode:
		return "a tagged value"
	}
	return n.Type().String()
}

// describeValue names a decoded value for messages.
func describeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "the string " + quote(x)
	case bool:
		return fmt.Sprintf("the boolean %t", x)
	case int64, uint64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return "the number " + strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// quote quotes s for a message, shortened to 64 characters.
func quote(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:max])) + "..."
}

// didYouMean suggests the candidate closest to s, when one is close enough to be a typo.
func didYouMean(s string, candidates []string) string {
	if best := suggest.Nearest(s, candidates); best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return ""
}
