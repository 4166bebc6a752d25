package keymanager

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// A call without a deadline gets SPIRE's own: 30 s per KeyManager call.
	defaultCallDeadline = 30 * time.Second
	maxReplyMargin      = time.Second
	maxResponseBytes    = 1 << 20
	userAgent           = "azure-kv-keymanager-spire-plugin"
)

// backoff is the wait before retry number n (1-based): exponential with jitter, capped.
type backoff struct {
	base time.Duration
	max  time.Duration
}

var defaultBackoff = backoff{base: 250 * time.Millisecond, max: 4 * time.Second}

func (b backoff) delay(retry int) time.Duration {
	delay := b.max
	if retry < 16 {
		delay = min(b.base<<(retry-1), b.max)
	}
	return delay/2 + rand.N(delay/2+1)
}

// newHTTPClient follows no redirect: Go would forward the Authorization header to a redirect on
// the same host or a subdomain of it, another port or plain http included, and the access token
// is for app_url alone.
func newHTTPClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// appClient calls the app's HTTP API. It holds no key logic: it sends SPIRE's request with an
// access token, retries what is worth retrying, and turns the app's answer into a gRPC status.
type appClient struct {
	settings   *settings
	credential azcore.TokenCredential
	http       *http.Client
	logger     hclog.Logger
	backoff    backoff
	// The id this plugin process sends on every call: SPIRE configures the plugin once per start.
	instance instanceID
}

// instanceID is made at the first call: 128 random bits in hex, X-SPIRE-Plugin-Instance. Two ids
// that keep calling under one server name tell the app that two live SPIRE servers share the name.
type instanceID struct {
	once  sync.Once
	value string
}

func (i *instanceID) get() string {
	i.once.Do(func() {
		random := make([]byte, 16)
		_, _ = crand.Read(random) // it never returns an error (crypto/rand)
		i.value = hex.EncodeToString(random)
	})
	return i.value
}

// apiErrorBody is the app's error document: {"error": {"code": "<gRPC code name>", "message"}}.
type apiErrorBody struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// attemptFailure is one attempt's failure: the status to report and whether another try may help.
type attemptFailure struct {
	status     *status.Status
	retryable  bool
	retryAfter time.Duration // what the app asked for; zero when it did not say
	// The ticket of a turn the app reserved for the next attempt, which carries it back (turnHeader).
	turn string
	// The app answered 429 with its error document: Key Vault, or the app on its behalf, asked for
	// a wait. A 429 from something in front of the app (the Functions host shedding load, a
	// gateway) says nothing of the vault's limit, and is retried as a 503 is.
	throttled bool
	// The call's own deadline ended the attempt: it says nothing of the app.
	cutShort bool
	// The request cannot have reached Key Vault: no token, the connection refused, or the app
	// said so (X-Key-Created: false on a 429 or 503).
	unsent bool
}

// retryRule says which failed attempts a call sends again.
type retryRule int

const (
	// Every failure another attempt may cure: reads and signs may be repeated.
	retryWhatMayHelp retryRule = iota
	// Only those whose request cannot have reached Key Vault: a key create that Key Vault may
	// still make current must not be followed by another, which would make a second key current.
	retryOnlyUnsent
	// As retryWhatMayHelp, but a throttled call waits out one Retry-After only: under a sustained
	// overload, signs that wait again and again form a queue that adds no signature (the vault
	// serves its limit either way), only latency for every caller and a backlog that keeps the
	// vault throttled long after the load drops. SPIRE's callers retry a failed mint on their own.
	// A turn the app reserved is always waited for: the app keeps that queue short.
	retryThrottledOnce
)

const (
	// The app sends no Key Vault request for an attempt past its deadline (less a margin).
	deadlineHeader = "X-Request-Deadline"
	// The app's word that no key version was made nor can be made later by a failed create.
	keyCreatedHeader = "X-Key-Created"
	// On a 429, the ticket of a turn the app reserved for this call, sent back with the next
	// attempt, and the wait to the millisecond: the turn begins at a moment, not on a whole second.
	turnHeader         = "X-Retry-Turn"
	retryAfterMsHeader = "retry-after-ms"
	deadlineFormat     = "2006-01-02T15:04:05.000Z07:00"
)

// call sends a request and decodes a 2xx JSON answer into out, retrying 429, 503, connection
// failures and failures to get a token, as far as the rule allows, while the call's deadline
// leaves room for another attempt.
func (c *appClient) call(ctx context.Context, rule retryRule, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return status.Errorf(codes.Internal, "unable to encode the request: %v", err)
		}
	}
	trace := traceOf(ctx)
	ctx, cancel := withReplyMargin(ctx)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var previous *attemptFailure
	waitedOutThrottling := false
	turn := ""
	for attempt := 1; ; attempt++ {
		failure := c.attempt(ctx, trace, method, path, payload, turn, out)
		if failure == nil {
			return nil
		}
		if failure.cutShort && previous != nil {
			// A last attempt the deadline cut short would hide what the app last answered.
			return giveUp(previous, attempt)
		}
		if !failure.retryable || (rule == retryOnlyUnsent && !failure.unsent) {
			return failure.status.Err()
		}
		turn = failure.turn
		if failure.throttled && rule == retryThrottledOnce && turn == "" {
			if waitedOutThrottling {
				// Not the deadline: the rule ends the call, and the message must not send operators to their timeouts.
				return status.Errorf(failure.status.Code(), "%s (throttled again after waiting once; %d attempts)", failure.status.Message(), attempt)
			}
			waitedOutThrottling = true
		}
		wait := c.backoff.delay(attempt)
		if failure.retryAfter > 0 {
			wait = failure.retryAfter
		}
		if ctx.Err() != nil || time.Until(deadline) <= wait {
			return giveUp(failure, attempt)
		}
		c.logger.Warn("The request failed; retrying", "method", method, "path", path, "trace_id", trace.traceID,
			"attempt", attempt, "code", failure.status.Code().String(), "reason", failure.status.Message(), "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return giveUp(failure, attempt)
		case <-time.After(wait):
		}
		previous = failure
	}
}

// withReplyMargin ends the call's retries a little before the caller's deadline (SPIRE's 30 s,
// or ours when it set none), so the caller reads the app's last message rather than its own timeout.
func withReplyMargin(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultCallDeadline)
	}
	margin := min(maxReplyMargin, time.Until(deadline)/10)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

func giveUp(failure *attemptFailure, attempts int) error {
	return status.Errorf(failure.status.Code(), "%s (gave up after %d attempts within the call's deadline)", failure.status.Message(), attempts)
}

func (c *appClient) attempt(ctx context.Context, trace callTrace, method, path string, payload []byte, turn string, out any) *attemptFailure {
	attemptCtx, cancel := context.WithTimeout(ctx, c.settings.requestTimeout)
	defer cancel()
	request, err := http.NewRequestWithContext(attemptCtx, method, c.settings.appURL.String()+path, bytes.NewReader(payload))
	if err != nil {
		return &attemptFailure{status: status.Newf(codes.Internal, "unable to build the request: %v", err)}
	}
	accessToken, err := getToken(attemptCtx, c.credential, c.settings)
	if err != nil {
		return &attemptFailure{status: status.New(codes.Unavailable, err.Error()), retryable: true, cutShort: ctx.Err() != nil, unsent: true}
	}
	deadline, _ := attemptCtx.Deadline()
	c.setHeaders(request, accessToken, payload != nil, deadline)
	request.Header.Set(traceparentHeader, trace.traceparent())
	if turn != "" {
		request.Header.Set(turnHeader, turn)
	}
	response, err := c.http.Do(request)
	if err != nil {
		return c.connectionFailure(ctx, err)
	}
	defer response.Body.Close()
	content, err := io.ReadAll(io.LimitReader(response.Body, maxResponseBytes))
	if err != nil {
		return c.connectionFailure(ctx, err)
	}
	if response.StatusCode/100 != 2 {
		retryable := response.StatusCode == http.StatusTooManyRequests || response.StatusCode == http.StatusServiceUnavailable
		appError := appErrorOf(content)
		throttled := response.StatusCode == http.StatusTooManyRequests && appError != nil
		failure := &attemptFailure{
			status:     statusFromResponse(response, appError, c.settings.serverName),
			retryable:  retryable,
			retryAfter: parseRetryAfter(response.Header),
			throttled:  throttled,
			unsent:     retryable && response.Header.Get(keyCreatedHeader) == "false",
		}
		if throttled {
			failure.turn = response.Header.Get(turnHeader)
		}
		return failure
	}
	if err := json.Unmarshal(content, out); err != nil {
		return &attemptFailure{status: status.Newf(codes.Internal, "the app's answer to %s %s is not the expected JSON: %v", method, path, err)}
	}
	return nil
}

func (c *appClient) setHeaders(request *http.Request, accessToken string, hasBody bool, deadline time.Time) {
	request.Header.Set("Authorization", "Bearer "+accessToken)
	request.Header.Set("User-Agent", userAgent)
	request.Header.Set("Accept", "application/json")
	if hasBody {
		request.Header.Set("Content-Type", "application/json")
	}
	if c.settings.serverName != "" {
		request.Header.Set("X-SPIRE-Server-Name", c.settings.serverName)
	}
	request.Header.Set("X-SPIRE-Trust-Domain", c.settings.trustDomain)
	request.Header.Set("X-SPIRE-Plugin-Instance", c.instance.get())
	request.Header.Set(deadlineHeader, deadline.UTC().Format(deadlineFormat))
}

// connectionFailure: the app did not answer; another attempt may find it up.
func (c *appClient) connectionFailure(ctx context.Context, err error) *attemptFailure {
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within request_timeout %s", c.settings.requestTimeout)
	}
	return &attemptFailure{
		status:    status.Newf(codes.Unavailable, "the app at %s did not answer: %v", c.settings.appURL, err),
		retryable: true,
		cutShort:  ctx.Err() != nil,
		unsent:    errors.Is(err, syscall.ECONNREFUSED),
	}
}

var codesByName = func() map[string]codes.Code {
	byName := make(map[string]codes.Code)
	for code := codes.OK; code <= codes.Unauthenticated; code++ {
		byName[code.String()] = code
	}
	return byName
}()

// statusFromResponse maps an error answer to a gRPC status. The app names SPIRE's gRPC code and
// says what went wrong; its message is passed on unchanged. An answer without the app's error
// document comes from something in front of the app (the Functions host, a gateway), so it never
// reads as NotFound: SPIRE would take that for a missing key and make a new one. For the same
// reason NotFound is believed only with the 404 the app sends it with.
func statusFromResponse(response *http.Response, appError *apiErrorBody, serverName string) *status.Status {
	statusCode := response.StatusCode
	answer := fmt.Sprintf("HTTP %d %s", statusCode, http.StatusText(statusCode))
	if statusCode/100 == 3 {
		return status.Newf(codes.Internal, "the app answered %s, a redirect, which is not followed so that the access token goes only to app_url: check app_url", answer)
	}
	if appError != nil {
		code, ok := codesByName[appError.Error.Code]
		if ok && code != codes.OK && appError.Error.Message != "" && (code != codes.NotFound || statusCode == http.StatusNotFound) {
			return status.New(code, appError.Error.Message)
		}
	}
	switch statusCode {
	case http.StatusUnauthorized:
		if challenge := response.Header.Get("WWW-Authenticate"); challenge != "" {
			answer += ", " + challenge
		}
		return status.Newf(codes.Unauthenticated, "the access token was refused (%s): check api_client_id and credential", answer)
	case http.StatusForbidden:
		return status.Newf(codes.PermissionDenied, "the request was refused (%s): check api_client_id and credential, and that the app's SPIRE_SERVER_IDENTITIES lets this identity act as %s",
			answer, serverDescription(serverName))
	case http.StatusTooManyRequests:
		return status.Newf(codes.ResourceExhausted, "the app is throttling requests (%s)", answer)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return status.Newf(codes.Unavailable, "the app is unavailable (%s)", answer)
	default:
		return status.Newf(codes.Internal, "the app answered %s without an API error: check app_url", answer)
	}
}

// appErrorOf is the app's error document in an answer; nil when the answer holds none, as one
// from the Functions host or a gateway in front of the app does not.
func appErrorOf(content []byte) *apiErrorBody {
	var body apiErrorBody
	if json.Unmarshal(content, &body) != nil || body.Error == nil {
		return nil
	}
	return &body
}

func serverDescription(serverName string) string {
	if serverName == "" {
		return "the server it holds there (server_name is unset)"
	}
	return fmt.Sprintf("server %q", serverName)
}

// parseRetryAfter reads retry-after-ms, else Retry-After as delay-seconds or an HTTP date; zero
// when absent or invalid.
func parseRetryAfter(header http.Header) time.Duration {
	if milliseconds, err := strconv.Atoi(header.Get(retryAfterMsHeader)); err == nil && milliseconds >= 0 {
		return time.Duration(milliseconds) * time.Millisecond
	}
	value := header.Get("Retry-After")
	if value == "" {
		return 0
	}
	if seconds, err := strconv.Atoi(value); err == nil && seconds >= 0 {
		return time.Duration(seconds) * time.Second
	}
	if when, err := http.ParseTime(value); err == nil {
		return max(time.Until(when), 0)
	}
	return 0
}
