package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// httpStatus maps a gRPC code to the HTTP status Connect gives it (which
// is grpc-gateway's too, but for Canceled: 499 in both, and
// FailedPrecondition: 400 in both).
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // client closed request
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError // Unknown, Internal, DataLoss
}

// codeName is a code as Connect spells it in JSON: "not_found".
func codeName(c codes.Code) string {
	if c == codes.Canceled {
		return "canceled"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// errorBody is an error as Connect writes it, so that one client reads
// the errors of every route.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// toStatus turns any error of a call into its status: a context error
// becomes DeadlineExceeded or Canceled.
func toStatus(err error) *status.Status {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	}
	return status.Convert(err)
}

// writeError answers with err's status mapped to HTTP and a Connect error
// body; httpCode overrides the mapped status when not 0 (413).
func writeError(w http.ResponseWriter, err error, httpCode int) {
	st := toStatus(err)
	if httpCode == 0 {
		httpCode = httpStatus(st.Code())
	}
	writeJSON(w, httpCode, errorBody{Code: codeName(st.Code()), Message: strings.TrimPrefix(st.Message(), "dynamic: ")})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
