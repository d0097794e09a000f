from idrun.console import main

raise SystemExit(main())
