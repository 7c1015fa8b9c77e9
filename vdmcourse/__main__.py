from vdmcourse.cli import main

raise SystemExit(main())
