"""The entry points: the `xsell` CLI (`cli.main`), the main job behind `make run` (`cli.demo`) and
the served-path backtest (`cli.backtest`). They compose every stage, so they sit above all of them;
no stage imports this package."""
