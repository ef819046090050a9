from odeflows.cli import main

raise SystemExit(main())
