"""``python -m relpos.sleep.synthetic OUT N ...``: see :func:`relpos.sleep.synthetic.writer.main`."""

from relpos.sleep.synthetic.writer import main

if __name__ == "__main__":
    main()
