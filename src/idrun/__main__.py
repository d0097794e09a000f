from idrun.cli import main

raise SystemExit(main())
