from linpath.cli import main

raise SystemExit(main())
