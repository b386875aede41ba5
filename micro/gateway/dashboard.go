package gateway

import "net/http"

func (g *Gateway) serveDashboard(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, g.state.snapshot())
}
