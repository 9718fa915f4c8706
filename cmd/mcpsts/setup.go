package main

import "github.com/mcpsts/mcpsts/internal/config"

// devConfig is the configuration of --dev: the defaults, with the data
// directory and listen address of the flags.
func devConfig(data, listen string) *config.Config {
	c := config.Defaults()
	c.DataDir, c.Listen = data, listen
	return &c
}
