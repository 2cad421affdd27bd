# What a run made, for people: contact sheets, errors.tsv and summary.json, all in the
# Snakemake report (snakemake --report report.html).


# One rule per product, as the sheets are known at parse time (outputs cannot be functions).
for product in PRODUCTS if SETTINGS.contact_sheets else []:

    rule:
        name:
            f"contact_sheets_{product.name}"
        input:
            done=all_done(),
        output:
            # update(): the job rebuilds only the sheets whose manifest changed, keeps the rest
            sheets=update(
                report(
                    contact_sheet_pngs(product.name),
                    caption="../report/contact_sheet.rst",
                    category="Contact sheets",
                    subcategory=product.name,
                )
            ),
            done=part_done(f"sheets/{product.name}"),
        log:
            str(OUTPUT.log("contact_sheets", product.name)),
        localrule: not SHARED_FS
        conda:
            "../envs/msrgb.yaml"
        params:
            sheet_lists=sheet_lists(product.name),
            product_dir=str(OUTPUT.image_dir(product.name)),
            product=product.to_dict(),
            thumbnail=config["thumbnail_size"],
        script:
            "../scripts/contact_sheets.py"


rule summarize:
    input:
        done=all_done(),
    output:
        errors=report(
            errors_table(), caption="../report/errors.rst", category="Summary"
        ),
        summary=report(
            summary_file(), caption="../report/summary.rst", category="Summary"
        ),
        manifests=provenance_manifests(),
        # update(): rewritten only when their content changes
        histograms=update(
            report(
                histograms(), caption="../report/histogram.rst", category="Histograms"
            )
        ),
        clipped=update(
            report(
                clipped_sheets(), caption="../report/clipping.rst", category="Clipping"
            )
        ),
        legends=update(
            report(legends(), caption="../report/legend.rst", category="Legends")
        ),
        done=part_done("summary"),
    log:
        summary_log(),
    conda:
        "../envs/msrgb.yaml"
    params:
        states=all_states(),
        planning=planning_errors(),
        output_dir=output_dir_of,
        n_products=len(PRODUCTS),
        digests=product_digests(),
        products=product_dicts(),
        thumbnail=config["thumbnail_size"],
        shared_fs=SHARED_FS,
    script:
        "../scripts/summarize.py"


onstart:
    start_of_run()


# (in a workflow that loads msrgb with `module`, common.smk hooks start_of_run in itself)
onsuccess:
    end_of_run(success=True)


onerror:
    end_of_run(success=False)


# With output_dir in S3: the results made in the local work folder go up at the end.
if SETTINGS.images:

    rule upload_results:
        input:
            part_markers(),
        output:
            done=part_done("upload"),
        log:
            str(OUTPUT.log("upload_results")),
        localrule: not SHARED_FS
        conda:
            "../envs/msrgb.yaml"
        params:
            work_dir=str(OUTPUT.output_dir),
        script:
            "../scripts/upload_results.py"
