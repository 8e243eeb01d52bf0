package confiture

// RegisterFromPackageConfiture calls Register from this package, for the external tests to
// register from two packages.
func RegisterFromPackageConfiture(def Definition) error { return Register(def) }
