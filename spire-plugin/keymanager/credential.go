package keymanager

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// newCredentialFunc builds the credential the plugin signs in with; tests put a fake in its place.
type newCredentialFunc func(*settings) (azcore.TokenCredential, error)

// newAzureCredential builds azidentity's credential of the configured kind. azidentity caches the
// token and gets a new one before it expires, so each request can simply ask it for one.
func newAzureCredential(s *settings) (azcore.TokenCredential, error) {
	c := s.credential
	clientOptions := azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: c.authorityHost}}
	switch c.kind {
	case workloadIdentity:
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions:            clientOptions,
			TenantID:                 c.tenantID,
			ClientID:                 c.appID,
			TokenFilePath:            c.federatedTokenFile,
			DisableInstanceDiscovery: c.disableInstanceDiscovery,
		})
	case managedIdentity:
		var options azidentity.ManagedIdentityCredentialOptions
		if c.managedIdentityClientID != "" {
			options.ID = azidentity.ClientID(c.managedIdentityClientID)
		}
		return azidentity.NewManagedIdentityCredential(&options)
	case clientSecret:
		return azidentity.NewClientSecretCredential(c.tenantID, c.appID, c.appSecret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions:            clientOptions,
			DisableInstanceDiscovery: c.disableInstanceDiscovery,
		})
	default: // defaultChain, named as such: parseSettings takes no other kind
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions:            clientOptions,
			DisableInstanceDiscovery: c.disableInstanceDiscovery,
		})
	}
}

// getToken asks the credential for an app-only token for the app's API, within ctx.
func getToken(ctx context.Context, credential azcore.TokenCredential, s *settings) (string, error) {
	token, err := credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{s.tokenScope}})
	if err == nil {
		return token.Token, nil
	}
	cause := oneLine(err)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		cause = fmt.Sprintf("no token within request_timeout %s (%s)", s.requestTimeout, cause)
	}
	return "", fmt.Errorf("unable to get an access token for %s from Microsoft Entra ID with credential %q: %s", s.tokenScope, s.credential.kind, cause)
}

// oneLine puts azidentity's error text, which spreads the request, the answer and a help link
// over several lines between rules of dashes, on one line: one readable entry in SPIRE's log.
func oneLine(err error) string {
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.Join(strings.Fields(line), " ")
		if strings.Trim(line, "-") != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " ")
}

// tokenIdentity is who an Entra ID access token says its holder is.
type tokenIdentity struct {
	TenantID string `json:"tid"`
	ObjectID string `json:"oid"`
	AppID    string `json:"appid"` // v1.0 tokens
	AZP      string `json:"azp"`   // v2.0 tokens
}

func (i tokenIdentity) clientID() string {
	if i.AppID != "" {
		return i.AppID
	}
	return i.AZP
}

// readTokenIdentity decodes an access token's payload without verifying it: the app verifies
// the token; this only tells the operator who the plugin signed in as.
func readTokenIdentity(accessToken string) (tokenIdentity, error) {
	var identity tokenIdentity
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		return identity, errors.New("the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return identity, fmt.Errorf("the access token's payload is not base64url: %w", err)
	}
	if err := json.Unmarshal(payload, &identity); err != nil {
		return identity, fmt.Errorf("the access token's payload is not JSON: %w", err)
	}
	return identity, nil
}
