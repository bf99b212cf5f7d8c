from alignkit.cli.main import main

raise SystemExit(main())
