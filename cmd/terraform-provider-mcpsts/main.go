// Command terraform-provider-mcpsts is the mcpsts Terraform provider.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/mcpsts/mcpsts/terraform"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	debug := flag.Bool("debug", false, "run with support for debuggers such as delve")
	flag.Parse()
	err := providerserver.Serve(context.Background(), terraform.New(version), providerserver.ServeOpts{
		Address: "registry.terraform.io/mcpsts/mcpsts",
		Debug:   *debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}
