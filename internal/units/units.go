// Package units writes quantities for people: sizes in bytes as "8.0 KiB" or "150.0 MiB".
// The dry-run's warnings, submit's report and the dry-run page share it, so a table's size reads
// the same everywhere.
package units

import "fmt"

// Bytes renders a size in bytes with binary prefixes and one decimal: 512 B, 8.0 KiB,
// 150.0 MiB, 1.2 GiB.
func Bytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
