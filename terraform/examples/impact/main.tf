# The blast radius of a trust-map change, in the plan: mcpsts replays the
# decisions of its audit log (the last week) against the maps as this
# configuration would make them, and the plan fails when an identity that
# must keep access would lose it.

terraform {
  required_providers {
    mcpsts = { source = "mcpsts/mcpsts" }
  }
}

provider "mcpsts" {}

variable "protected" {
  description = "Identities (provider/subject) that must never lose access."
  type        = list(string)
  default     = ["ci/system:serviceaccount:apps:agent"]
}

# The map as proposed: one definition for the resource and for the replay.
locals {
  agent_map = {
    id    = "agent"
    match = { provider = "ci", subject = "system:serviceaccount:apps:agent" }
    grant = { client_id = "agent", audiences = ["https://files.example.com/mcp"] }
  }
}

data "mcpsts_impact" "proposed" {
  maps  = { (local.agent_map.id) = jsonencode(local.agent_map) }
  since = "168h"

  # Fails the plan: a protected identity would lose access.
  lifecycle {
    postcondition {
      condition     = length(setintersection(toset(self.lose_identities), toset(var.protected))) == 0
      error_message = "the change cuts off: ${join(", ", setintersection(toset(self.lose_identities), toset(var.protected)))}"
    }
  }
}

# Shown at every plan (a warning, not a failure): any change of access.
check "blast_radius" {
  assert {
    condition     = !data.mcpsts_impact.proposed.changes
    error_message = "access changes: ${data.mcpsts_impact.proposed.lose_count} decisions would be denied (${join(", ", data.mcpsts_impact.proposed.lose_identities)}), ${data.mcpsts_impact.proposed.gain_count} allowed (${join(", ", data.mcpsts_impact.proposed.gain_identities)}), ${data.mcpsts_impact.proposed.change_count} changed."
  }
}

resource "mcpsts_trust_map" "agent" {
  id    = local.agent_map.id
  match = local.agent_map.match
  grant = local.agent_map.grant
}
