# A complete mcpsts configuration as code: a Kubernetes cluster trusted as a
# provider, two trust maps with conditions, a registered client, a consent,
# and the data sources that show who gets what.
#
# The provider reads its settings from the environment:
#   MCPSTS_URL        the broker's issuer URL
#   MCPSTS_CA_FILE    the CA to trust for it
# and authenticates without a static secret, either
#   MCPSTS_CLIENT_CERT_FILE / MCPSTS_CLIENT_KEY_FILE   an administrator's certificate
#                                                       (serve --dev writes admin.pem and admin-key.pem)
# or
#   MCPSTS_TOKEN_SOURCE    evidence exchanged at the broker for an admin token
#                          (github in GitHub Actions, k8s in a pod, file:PATH)

terraform {
  required_providers {
    mcpsts = {
      source = "mcpsts/mcpsts"
    }
  }
}

provider "mcpsts" {}

variable "kubernetes_issuer" {
  description = "The cluster's service-account token issuer (kubectl get --raw /.well-known/openid-configuration)."
  type        = string
}

variable "kubernetes_ca_file" {
  description = "A PEM CA file on the broker's machine for the issuer's HTTPS, if it is not publicly trusted."
  type        = string
  default     = null
}

variable "alice_consent_expires_at" {
  description = "When Alice's consent ends (RFC 3339, at most a year ahead)."
  type        = string
}

variable "files_server" {
  description = "The MCP server the agents use."
  type        = string
  default     = "https://files.example.com/mcp"
}

resource "mcpsts_federation_provider" "kubernetes" {
  id        = "kubernetes"
  issuer    = var.kubernetes_issuer
  discovery = true
  ca_file   = var.kubernetes_ca_file
  preset    = "kubernetes"
}

# The agents of namespace apps read files, and ask for nothing else.
resource "mcpsts_trust_map" "agents" {
  id          = "apps-agents"
  description = "agents of namespace apps: read-only access to the files server"
  match = {
    provider        = mcpsts_federation_provider.kubernetes.id
    subject_pattern = "system:serviceaccount:apps:[a-z0-9-]+"
    conditions = [
      "identity.attributes.namespace == \"apps\"",
      "request.scopes.all(s, s.startsWith(\"files:\"))",
    ]
  }
  grant = {
    client_id      = "apps-agent"
    audiences      = [var.files_server]
    scopes         = ["files:read"]
    default_scopes = ["files:read"]
    max_ttl        = "10m"
  }
}

# The files server itself may write, and may act for the agents downstream.
resource "mcpsts_trust_map" "files_server" {
  id = "files-server"
  match = {
    provider   = mcpsts_federation_provider.kubernetes.id
    subject    = "system:serviceaccount:mcp:files"
    conditions = ["identity.attributes.?pod_name.orValue(\"\") != \"\""]
  }
  grant = {
    client_id = "files-server"
    audiences = [var.files_server]
    scopes    = ["files:read", "files:write"]
  }
}

resource "mcpsts_client" "apps_agent" {
  id          = "apps-agent"
  name        = "Agents of namespace apps"
  grant_types = ["urn:ietf:params:oauth:grant-type:token-exchange", "client_credentials"]
}

# Alice lets the apps agent read files on her behalf, until a date.
resource "mcpsts_consent" "alice" {
  identity_provider = "corp"
  user              = "alice@example.com"
  client_id         = mcpsts_client.apps_agent.id
  scopes            = ["files:read"]
  resources         = [var.files_server]
  expires_at        = var.alice_consent_expires_at
}

data "mcpsts_metadata" "broker" {}

# Shown in every plan: does the billing agent get a token? (Expected: no.)
data "mcpsts_explain" "billing_agent" {
  identity_provider = "kubernetes"
  subject           = "system:serviceaccount:billing:agent"
  attributes        = { namespace = "billing" }
  audience          = var.files_server
  depends_on        = [mcpsts_trust_map.agents, mcpsts_trust_map.files_server]
}

output "token_endpoint" {
  value = data.mcpsts_metadata.broker.token_endpoint
}

output "billing_agent_allowed" {
  value = data.mcpsts_explain.billing_agent.allowed
}
