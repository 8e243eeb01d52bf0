package sqlscript

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConcurrentIndex(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		sql  string
		want IndexStatement
		ok   bool
	}{
		{"CREATE INDEX CONCURRENTLY orders_customer ON orders (customer_id)", IndexStatement{Create: true, Name: "orders_customer", Table: "orders"}, true},
		{"create unique index concurrently if not exists \"Odd Name\" on only app.\"Orders\" using btree (x)",
			IndexStatement{Create: true, IfNotExists: true, Name: `"Odd Name"`, Table: `app."Orders"`}, true},
		{"CREATE INDEX CONCURRENTLY ON orders (x)", IndexStatement{Create: true, Table: "orders"}, true},
		{"CREATE INDEX CONCURRENTLY \"on\" ON orders (x)", IndexStatement{Create: true, Name: `"on"`, Table: "orders"}, true},
		{"DROP INDEX CONCURRENTLY IF EXISTS app.orders_customer CASCADE", IndexStatement{IfExists: true, Name: "app.orders_customer"}, true},
		{"DROP INDEX CONCURRENTLY a, b", IndexStatement{}, false},
		{"CREATE INDEX orders_customer ON orders (x)", IndexStatement{}, false},
		{"VACUUM orders", IndexStatement{}, false},
		{"-- c\nCREATE /* x */ INDEX CONCURRENTLY i ON t (x)", IndexStatement{Create: true, Name: "i", Table: "t"}, true},
	} {
		got, ok := ConcurrentIndex(tt.sql)
		require.Equal(t, tt.ok, ok, tt.sql)
		require.Equal(t, tt.want, got, tt.sql)
	}
}

func TestIdent(t *testing.T) {
	t.Parallel()
	require.Equal(t, "orders", Ident("Orders"))
	require.Equal(t, "Odd \"Name\"", Ident(`"Odd ""Name"""`))
}
