from mpnas.cli import main

raise SystemExit(main())
