// Gitea's command line, as its own main package runs it: `gitea web`,
// `gitea admin user create`, … for the commit status tests.
package main

import (
	"os"
	"time"

	"code.gitea.io/gitea/cmd"
	"code.gitea.io/gitea/modules/log"
	"code.gitea.io/gitea/modules/setting"

	"github.com/urfave/cli/v3"
)

// Version is Gitea's version, set by scripts/gitea.sh.
var Version = "development"

func main() {
	setting.AppVer = Version
	setting.AppStartTime = time.Now().UTC()
	cli.OsExiter = func(code int) {
		log.GetManager().Close()
		os.Exit(code)
	}
	app := cmd.NewMainApp(cmd.AppVersion{Version: Version})
	_ = cmd.RunMainApp(app, os.Args...)
	log.GetManager().Close()
}
