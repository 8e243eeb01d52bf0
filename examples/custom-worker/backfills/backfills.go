// Package backfills registers the example shop's batched backfills, defined in Go: their table
// and statement are reviewed with the code, and a hooks file declares them by name and may only
// tune them (batch sizes, rate).
package backfills

import "github.com/confiture-io/confiture-worker"

func init() {
	confiture.MustRegister(confiture.Backfill{
		Table: "products",
		Set:   "price_cents = (price * 100)::bigint",
		Where: "price_cents IS NULL",
	}.Definition("fill_price_cents", "fill products.price_cents from price"))
}
