package hooks

import "github.com/confiture-io/confiture-worker/internal/suggest"

// Suggest returns the registered hook name that name, a mistyped one, was meant to be, or ""
// when none is close (package suggest).
func (r *Registry) Suggest(name string) string {
	var names []string
	for _, d := range r.List() {
		names = append(names, d.Name)
	}
	return suggest.Nearest(name, names)
}
