import uvloop

from web.main import main

uvloop.run(main())
